"""The HTTP/JSON decision API (pdp/api/http.py) against the real OPA sidecar: answers, errors,
deadlines, fail-closed answers, bearer tokens, TLS and the `pdp serve --http-listen` wiring."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pdp.api.http_server import HttpDecisionServer
from pdp.api.token_file import BearerTokens
from pdp.embedded import EmbeddedPDP
from pdp.engine.opa_http import OpaHttpEngine
from pdp.point import DecisionPoint
from tests.conftest import ROOT, load_intent, self_signed
from tests.freeze import frozen


@pytest.fixture(scope="module")
def http(stack: EmbeddedPDP) -> Iterator[HttpDecisionServer]:
    with HttpDecisionServer(stack.point, engine_ready=stack.engine_ready) as server:
        yield server


@pytest.fixture()
def client(http: HttpDecisionServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=http.url, timeout=5) as c:
        yield c


def codes(doc: dict[str, object]) -> list[str]:
    return [r["code"] for r in doc["reasons"]]  # type: ignore[attr-defined,index]


def test_residency_violation_is_a_deny_document(client: httpx.Client, stack: EmbeddedPDP) -> None:
    response = client.post("/v1/decide", json=load_intent("02-acme-eu-deploy-us.json"))
    assert response.status_code == 200
    doc = response.json()
    assert doc["outcome"] == "DENY" and codes(doc) == ["RESIDENCY_VIOLATION"]
    assert doc["bundle_revision"] == stack.bundle.revision  # type: ignore[union-attr]
    assert doc["tenant"] == "acme-eu" and doc["decision_id"] and doc["decided_at"]


def test_batch_answers_in_order_on_one_revision(client: httpx.Client) -> None:
    intents = [load_intent("01-acme-eu-deploy-eu.json"), load_intent("02-acme-eu-deploy-us.json")]
    response = client.post("/v1/decide/batch", json={"intents": intents})
    assert response.status_code == 200
    decisions = response.json()["decisions"]
    assert [d["outcome"] for d in decisions] == ["ALLOW", "DENY"]
    assert len({d["bundle_revision"] for d in decisions}) == 1


def test_malformed_requests_name_the_field(client: httpx.Client) -> None:
    bad = client.post("/v1/decide", json={"kind": "deploy_model", "tenant": "acme-eu"})
    assert bad.status_code == 400
    assert bad.json()["field"] == "deploy_model" and "required" in bad.json()["error"]
    batch = client.post("/v1/decide/batch", json={"intents": [{"kind": "nope"}]})
    assert batch.status_code == 400 and batch.json()["field"].startswith("intents[0]")
    assert client.post("/v1/decide/batch", json=[]).json()["field"] == "intents"
    not_json = client.post("/v1/decide", content=b"{not json")
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]
    assert client.post("/v1/decide", json=[1]).json()["error"] == "(document): must be a JSON object"
    assert client.get("/v1/decide").status_code == 405
    assert client.post("/v1/nothing", json={}).status_code == 404
    timeout = client.post("/v1/decide?timeout=soon", json=load_intent("01-acme-eu-deploy-eu.json"))
    assert timeout.status_code == 400 and timeout.json()["field"] == "timeout"
    header = client.post(
        "/v1/decide", json=load_intent("01-acme-eu-deploy-eu.json"), headers={"Request-Timeout": "-1s"}
    )
    assert header.status_code == 400 and header.json()["field"] == "Request-Timeout"


def test_a_body_above_the_limit_is_refused_before_it_is_read(stack: EmbeddedPDP) -> None:
    with (
        HttpDecisionServer(stack.point, max_body=1024) as server,
        httpx.Client(base_url=server.url, timeout=5) as c,
    ):
        declared = c.post("/v1/decide", content=b" " * 2048)
        assert declared.status_code == 413 and "1024" in declared.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            yield b" " * 1000
            yield b" " * 1000

        streamed = c.post("/v1/decide", content=chunks())
        assert streamed.status_code == 413


@pytest.mark.parametrize("how", ["query", "header"])
def test_the_callers_deadline_gives_engine_timeout_before_it(
    client: httpx.Client, stack: EmbeddedPDP, how: str
) -> None:
    intent = load_intent("01-acme-eu-deploy-eu.json")
    assert client.post("/v1/decide", json=intent).json()["outcome"] == "ALLOW"
    assert stack.sidecar is not None and stack.sidecar.pid is not None
    params = {"timeout": "800ms"} if how == "query" else {}
    headers = {"Request-Timeout": "0.8"} if how == "header" else {}
    # frozen(): every OPA thread stopped before the request goes; a bare SIGSTOP left threads that
    # still answered ALLOW on a loaded machine (tests/freeze.py).
    with frozen(stack.sidecar.pid):
        started = time.monotonic()
        response = client.post("/v1/decide", json=intent, params=params, headers=headers)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert response.json()["outcome"] == "DENY" and codes(response.json()) == ["ENGINE_TIMEOUT"]
    # The answer (DENY) arrives before the deadline, margin included, also on a loaded machine.
    assert 0.5 < elapsed < 0.8, (elapsed, response.json()["evaluation_ms"])


def test_an_unreachable_engine_is_a_deny_never_an_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    point = DecisionPoint(OpaHttpEngine(dead))
    with (
        HttpDecisionServer(point, engine_ready=lambda: False) as server,
        httpx.Client(base_url=server.url, timeout=5) as c,
    ):
        doc = c.post("/v1/decide", json=load_intent("01-acme-eu-deploy-eu.json")).json()
        assert doc["outcome"] == "DENY" and codes(doc) == ["ENGINE_UNAVAILABLE"]
        batch = c.post("/v1/decide/batch", json={"intents": [load_intent("04-globex-deploy-shared.json")]})
        assert [d["outcome"] for d in batch.json()["decisions"]] == ["DENY"]
        assert c.get("/readyz").status_code == 503
        assert c.get("/healthz").status_code == 200


def test_bearer_tokens_are_required_and_rotate_without_a_restart(stack: EmbeddedPDP, tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    tokens = BearerTokens.write_new(token_file, "first-token")
    intent = load_intent("01-acme-eu-deploy-eu.json")
    with (
        HttpDecisionServer(stack.point, tokens=tokens) as server,
        httpx.Client(base_url=server.url, timeout=5) as c,
    ):
        missing = c.post("/v1/decide", json=intent)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = c.post("/v1/decide", json=intent, headers={"Authorization": "Bearer first-token-not"})
        assert wrong.status_code == 401
        basic = c.post("/v1/decide", json=intent, headers={"Authorization": "Basic Zmlyc3QtdG9rZW4="})
        assert basic.status_code == 401
        ok = c.post("/v1/decide", json=intent, headers={"Authorization": "Bearer first-token"})
        assert ok.status_code == 200 and ok.json()["outcome"] == "ALLOW"
        # Rotation: the new token joins, then the old one leaves; no restart.
        token_file.write_text("first-token\nsecond-token\n")
        both = c.post("/v1/decide", json=intent, headers={"Authorization": "Bearer second-token"})
        assert both.status_code == 200
        token_file.write_text("# rotated\nsecond-token\n")
        old = c.post("/v1/decide", json=intent, headers={"Authorization": "Bearer first-token"})
        assert old.status_code == 401
        # A file others may read is refused; the tokens read before keep working, none are added.
        token_file.write_text("second-token\nthird-token\n")
        token_file.chmod(0o644)
        third = c.post("/v1/decide", json=intent, headers={"Authorization": "Bearer third-token"})
        assert third.status_code == 401
        # Probes stay open to the kubelet.
        assert c.get("/healthz").status_code == 200


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    from pdp.api.token_file import TokenFileError

    path = tmp_path / "tokens"
    path.write_text("t\n")
    for mode in (0o644, 0o604, 0o660, 0o650):  # others may read, or the group may write
        path.chmod(mode)
        with pytest.raises(TokenFileError, match="chmod 600"):
            BearerTokens(path)
    # Group-readable is private only when the group is this process's own (a Kubernetes Secret
    # mounted with fsGroup): a group of other users is refused.
    foreign = next(g for g in range(60000, 65536) if g not in {os.getegid(), *os.getgroups()})
    path.chmod(0o440)
    os.chown(path, -1, foreign)
    with pytest.raises(TokenFileError, match="chmod 600"):
        BearerTokens(path)
    os.chown(path, -1, os.getegid())
    assert BearerTokens(path).accepts("t")
    path.chmod(0o600)
    path.write_text("# only a comment\n")
    with pytest.raises(TokenFileError, match="no token"):
        BearerTokens(path)


def _served_serial(server: HttpDecisionServer) -> int:
    from cryptography import x509

    pem = ssl.get_server_certificate(("127.0.0.1", server.port))  # a new connection each time
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def test_tls_serves_https_and_takes_a_rotated_certificate(stack: EmbeddedPDP, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with HttpDecisionServer(stack.point, cert_file=cert, key_file=key, cert_poll_interval=0.1) as server:
        assert server.url.startswith("https://")
        trust = ssl.create_default_context(cafile=cert)
        with httpx.Client(base_url=server.url, verify=trust, timeout=5) as c:
            assert c.post("/v1/decide", json=load_intent("01-acme-eu-deploy-eu.json")).status_code == 200
        first = _served_serial(server)
        new_dir = tmp_path / "new"
        new_dir.mkdir()
        new_cert, new_key = self_signed(new_dir)
        cert.write_bytes(new_cert.read_bytes())
        key.write_bytes(new_key.read_bytes())
        assert server.certificate is not None
        deadline = time.monotonic() + 10
        while server.certificate.status().reloads == 0:
            assert time.monotonic() < deadline, "the rotated certificate was not taken"
            time.sleep(0.05)
        assert _served_serial(server) != first
        # Plain HTTP to the TLS port gets nothing decided.
        with pytest.raises(httpx.HTTPError):
            httpx.post(server.url.replace("https", "http") + "/v1/decide", json={}, timeout=2)


def _pdp(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_serve_refuses_plaintext_http_off_loopback(workspace: Path) -> None:
    out = _pdp("serve", "--http-listen", "0.0.0.0:0", "--state", str(workspace / "state"))
    assert out.returncode != 0
    assert "--http-listen 0.0.0.0:0 is not loopback: give --http-cert and --http-key" in out.stderr
    half = _pdp("serve", "--http-listen", "127.0.0.1:0", "--http-cert", "x.pem")
    assert "give both --http-cert and --http-key" in half.stderr


def test_pdp_serve_http_listen_answers_like_grpc(workspace: Path, opa_binary: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token_file = workspace / "tokens"
    BearerTokens.write_new(token_file, "cli-token")
    examples = workspace / "examples"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pdp.cli",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            f"127.0.0.1:{port}",
            "--http-token-file",
            str(token_file),
            "--tenants",
            str(examples / "tenants"),
            "--fleet",
            str(examples / "fleet.yaml"),
            "--bundles",
            str(workspace / "bundles"),
            "--keys",
            str(workspace / "keys"),
            "--state",
            str(workspace / "state"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("pdp serving on"):
                break
        announced = f"HTTP decision API on http://127.0.0.1:{port}/v1/decide (bearer token)"
        assert any(announced in line for line in lines)
        headers = {"Authorization": "Bearer cli-token"}
        intent = json.loads((examples / "intents" / "03-acme-eu-request-sharing.json").read_text())
        doc = httpx.post(f"http://127.0.0.1:{port}/v1/decide", json=intent, headers=headers, timeout=5).json()
        assert doc["outcome"] == "DENY" and codes(doc) == ["SHARING_NOT_ALLOWED"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0


def test_a_unix_socket_is_served_only_from_a_folder_others_cannot_write(
    stack: EmbeddedPDP, tmp_path: Path
) -> None:
    from pdp.net.listen import ListenError

    run = tmp_path / "run"
    run.mkdir(mode=0o750)
    path = run / "http.sock"
    with socket.socket(socket.AF_UNIX) as stale:  # left by a run that died: replaced
        stale.bind(str(path))
    with (
        HttpDecisionServer(stack.point, unix_socket=path) as server,
        httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://pdp", timeout=5) as c,
    ):
        assert server.url == f"unix:{path}"
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        answer = c.post("/v1/decide", json=load_intent("01-acme-eu-deploy-eu.json")).json()
        assert answer["outcome"] == "ALLOW"
    assert not path.exists()
    # Where another user may create files, one could bind the path while the PDP is down.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(ListenError, match="may be written by others than its owner"):
        HttpDecisionServer(stack.point, unix_socket=shared / "http.sock")
    (run / "file").write_text("")
    with pytest.raises(ListenError, match="exists and is not a socket"):
        HttpDecisionServer(stack.point, unix_socket=run / "file")

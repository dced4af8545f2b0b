"""Who may ask the decision fronts (issue 28, hole 2): bearer tokens bound to principals on gRPC
and HTTP (pdp/api/auth.py), required off loopback and refused at start without them, a tenant
asking only about itself, and the principal, not the intent's `actor`, in the decision log."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
from pdp._proto.gpupaas.pdp.v1 import pdp_pb2_grpc
from pdp.api.client import PdpClient
from pdp.api.http_server import HttpDecisionServer
from pdp.api.server import PdpServer
from pdp.api.token_file import BearerTokens, TokenFileError
from pdp.api.translate import intent_to_proto
from pdp.embedded import EmbeddedPDP
from pdp.net.listen import ListenError
from pdp.point import DecisionPoint
from pdp.records.log import DecisionLog, Integrity
from tests.conftest import ROOT, load_intent

TOKENS = """# principals of the decision fronts
tenant:acme-eu acme-token
substrate:slurm slurm-token
admin admin-token
"""
OWN = load_intent("01-acme-eu-deploy-eu.json")  # tenant acme-eu, actor alice@acme.example
OTHER = load_intent("04-globex-deploy-shared.json")  # tenant globex


def exposed_address() -> str:
    """A non-loopback IPv4 address of this machine (eth0's), to serve off loopback for real."""
    try:
        found = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        found = []
    for text in found:
        address = ipaddress.ip_address(text)
        if address.version == 4 and not address.is_loopback:
            return text
    pytest.skip("this machine has no non-loopback IPv4 address to serve on")


class Counting:
    """The stack's engine, counting evaluations: a refused request must reach none."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.calls = 0

    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        self.calls += 1
        return self.engine.evaluate(path, input_doc, timeout=timeout)


@pytest.fixture()
def tokens(tmp_path: Path) -> BearerTokens:
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    path.chmod(0o600)
    return BearerTokens(path)


@pytest.fixture()
def counted(stack: EmbeddedPDP, tmp_path: Path) -> Iterator[tuple[DecisionPoint, Counting, DecisionLog]]:
    engine = Counting(stack.engine)
    log = DecisionLog(
        tmp_path / "state" / "decisions.sqlite", Integrity(checkpoints=f"dir:{tmp_path / 'ck'}")
    )
    yield DecisionPoint(engine, log, coalesce=False), engine, log
    log.close()


def _grpc_decide(address: str, intent: dict[str, Any], token: str | None) -> pb.DecideResponse:
    metadata = (("authorization", f"Bearer {token}"),) if token is not None else ()
    with grpc.insecure_channel(address) as channel:
        stub = pdp_pb2_grpc.DecisionServiceStub(channel)
        reply: pb.DecideResponse = stub.Decide(
            pb.DecideRequest(intent=intent_to_proto(intent)), timeout=10, metadata=metadata
        )
        return reply


def _code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as refused:
        call()
    code: grpc.StatusCode = refused.value.code()  # type: ignore[attr-defined]
    return code


def test_grpc_decide_off_loopback_needs_a_valid_token(
    stack: EmbeddedPDP, tokens: BearerTokens, counted: tuple[DecisionPoint, Counting, DecisionLog]
) -> None:
    point, engine, _ = counted
    host = exposed_address()
    server = PdpServer(point, listen=f"{host}:0", tokens=tokens).start()
    try:
        assert _code(lambda: _grpc_decide(server.address, OWN, None)) == grpc.StatusCode.UNAUTHENTICATED
        assert _code(lambda: _grpc_decide(server.address, OWN, "nope")) == grpc.StatusCode.UNAUTHENTICATED
        with PdpClient(server.address, timeout=10) as anonymous:
            assert _code(lambda: anonymous.decide_batch([OWN])) == grpc.StatusCode.UNAUTHENTICATED
        assert engine.calls == 0
        with PdpClient(server.address, timeout=10, token="slurm-token") as slurm:
            assert slurm.decide(OWN)["outcome"] == "ALLOW"
        assert engine.calls == 1
    finally:
        server.stop()


def test_http_off_loopback_needs_a_valid_token(
    tokens: BearerTokens, counted: tuple[DecisionPoint, Counting, DecisionLog]
) -> None:
    point, engine, log = counted
    with (
        HttpDecisionServer(point, host=exposed_address(), tokens=tokens) as server,
        httpx.Client(base_url=server.url, timeout=10) as c,
    ):
        assert c.post("/v1/decide", json=OWN).status_code == 401
        assert c.post("/v1/decide", json=OWN, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert engine.calls == 0
        ok = c.post("/v1/decide", json=OWN, headers={"Authorization": "Bearer admin-token"})
        assert ok.status_code == 200 and ok.json()["outcome"] == "ALLOW"
    assert [r.principal for r in log.query()] == ["admin"]


def test_servers_off_loopback_without_tokens_are_refused(stack: EmbeddedPDP) -> None:
    host = exposed_address()
    with pytest.raises(ListenError, match=f"--listen {re.escape(host)}:0 is not loopback: give --token-file"):
        PdpServer(stack.point, listen=f"{host}:0")
    with pytest.raises(ListenError, match="is not loopback: give --http-token-file"):
        HttpDecisionServer(stack.point, host=host)


def _pdp(*args: str) -> tuple[int | None, str]:
    """Exit status (None: still serving after 30 s, then stopped) and stderr of a `pdp` command.
    In a session of its own, so a `pdp serve` that is not refused goes with the OPA it started."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pdp.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=30)
        return process.returncode, stderr
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate(timeout=30)
        return None, stderr


def test_pdp_serve_off_loopback_without_a_token_file_is_refused_naming_the_option(workspace: Path) -> None:
    # --insecure lifts the TLS rule, not this one: a private network does not say who asks.
    state = str(workspace / "state")
    status, stderr = _pdp("serve", "--listen", "0.0.0.0:0", "--insecure", "--state", state)
    assert status == 2 and "--listen 0.0.0.0:0 is not loopback: give --token-file" in stderr
    status, stderr = _pdp(
        "serve", "--listen", "127.0.0.1:0", "--http-listen", "0.0.0.0:0", "--insecure", "--state", state
    )
    assert status == 2 and "--http-listen 0.0.0.0:0 is not loopback: give --http-token-file" in stderr


def test_a_tenant_asks_only_about_itself_and_is_refused_before_evaluation(
    tokens: BearerTokens, counted: tuple[DecisionPoint, Counting, DecisionLog]
) -> None:
    point, engine, log = counted
    acme = {"Authorization": "Bearer acme-token"}
    workload = load_intent("06-initech-spot-enterprise-priority.json")  # tenant from its namespace
    grpc_server = PdpServer(point, listen="127.0.0.1:0", tokens=tokens).start()
    try:
        with (
            HttpDecisionServer(point, tokens=tokens) as http,
            httpx.Client(base_url=http.url, timeout=10) as c,
            PdpClient(grpc_server.address, timeout=10, token="acme-token") as client,
        ):
            other = c.post("/v1/decide", json=OTHER, headers=acme)
            assert other.status_code == 403 and "tenant:acme-eu" in other.json()["error"]
            assert c.post("/v1/decide", json=workload, headers=acme).status_code == 403
            batch = c.post("/v1/decide/batch", json={"intents": [OWN, OTHER]}, headers=acme)
            assert batch.status_code == 403
            assert _code(lambda: client.decide(OTHER)) == grpc.StatusCode.PERMISSION_DENIED
            assert _code(lambda: client.decide_batch([OWN, OTHER])) == grpc.StatusCode.PERMISSION_DENIED
            assert engine.calls == 0 and log.query() == []
            # Its own tenant is answered; a substrate asks about any tenant.
            assert c.post("/v1/decide", json=OWN, headers=acme).json()["outcome"] == "ALLOW"
            assert client.decide(OWN)["outcome"] == "ALLOW"
            slurm = {"Authorization": "Bearer slurm-token"}
            assert c.post("/v1/decide", json=OTHER, headers=slurm).status_code == 200
            assert engine.calls == 3
    finally:
        grpc_server.stop()


def test_the_decision_log_records_the_tokens_principal_not_the_callers_actor(
    tokens: BearerTokens, counted: tuple[DecisionPoint, Counting, DecisionLog]
) -> None:
    point, _, log = counted
    claimed = {**OWN, "actor": "admin"}  # what the caller says about itself
    grpc_server = PdpServer(point, listen="127.0.0.1:0", tokens=tokens).start()
    try:
        with (
            HttpDecisionServer(point, tokens=tokens) as http,
            PdpClient(grpc_server.address, timeout=10, token="slurm-token") as client,
        ):
            answer = httpx.post(
                f"{http.url}/v1/decide",
                json=claimed,
                headers={"Authorization": "Bearer acme-token"},
                timeout=10,
            )
            assert answer.status_code == 200
            client.decide_batch([claimed])
    finally:
        grpc_server.stop()
    records = log.query()
    assert [r.to_dict()["principal"] for r in records] == ["tenant:acme-eu", "substrate:slurm"]


def test_loopback_without_tokens_serves_local_callers(
    counted: tuple[DecisionPoint, Counting, DecisionLog],
) -> None:
    point, _, log = counted
    grpc_server = PdpServer(point, listen="127.0.0.1:0").start()
    try:
        with HttpDecisionServer(point) as http, PdpClient(grpc_server.address, timeout=10) as client:
            assert client.decide(OTHER)["decision_id"]
            answer = httpx.post(f"{http.url}/v1/decide", json=OWN, timeout=10)
            assert answer.status_code == 200 and answer.json()["outcome"] == "ALLOW"
    finally:
        grpc_server.stop()
    assert [r.principal for r in log.query()] == ["local", "local"]


def test_a_token_file_binds_principals_and_reads_a_bare_token_as_admin(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pdp.api.token_file import Principal

    path = tmp_path / "tokens"
    path.write_text("tenant:acme-eu t1\nsubstrate:kueue t2\nlegacy-token\n")
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="pdp.api.token_file"):
        tokens = BearerTokens(path)
    assert tokens.principal_of("t1") == Principal("tenant", "acme-eu")
    assert str(tokens.principal_of("t2")) == "substrate:kueue"
    assert str(tokens.principal_of("legacy-token")) == "admin"
    assert tokens.principal_of("t3") is None
    assert "1 token(s) without a principal, read as admin" in caplog.text
    for bad, problem in (
        ("tenant:Acme t1\n", "principal 'tenant:Acme'"),
        ("root t1\n", "principal 'root'"),
        ("admin t1 extra\n", "expected PRINCIPAL TOKEN"),
        ("admin t1\ntenant:acme-eu t1\n", "another principal"),
    ):
        path.write_text(bad)
        with pytest.raises(TokenFileError, match=f"{re.escape(str(path))}:\\d+: .*{re.escape(problem)}"):
            BearerTokens(path)


def test_the_tenant_kinds_are_those_the_policies_read_from_input_tenant() -> None:
    from pdp.api.auth import NAMED_TENANT_KINDS

    lib = (ROOT / "policies" / "gpupaas" / "lib" / "lib.rego").read_text()
    body = re.search(r"^named_tenant_kinds := \{(.*?)\}", lib, re.S | re.M)
    assert body is not None
    assert set(re.findall(r'"([a-z_]+)"', body.group(1))) == NAMED_TENANT_KINDS

"""The Granian front of the webhook (`--webhook-front granian`, the default without client names):
HTTP/2 offered by ALPN beside HTTP/1.1, reviews decided by the real engines over both, client
certificates verified in the handshake, overload answered 503 with `Retry-After` and a JSON reason
(never a reset, never decided), bodies above the limit and clients that stop sending refused.
Real servers on loopback over real TLS; certificate rotation is in test_cert_reload.py."""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pdp.embedded import EmbeddedPDP
from pdp.net.granian import VERIFIED_CALLER, GranianJsonServer, NamesNotCheckable
from pdp.net.jsonhttp import Query
from pdp.net.listen import ListenError
from pdp.net.servingcert import ServingCertificate
from pdp.point import DecisionPoint
from pdp.substrate.kubernetes.enforcement.launch import add_webhook_options, webhook_front
from pdp.substrate.kubernetes.enforcement.webhook import AdmissionWebhook, WebhookServer
from tests.substrate.kubernetes.enforcement.conftest import body, own_pool, pod, review
from tests.substrate.kubernetes.enforcement.test_client_auth import ADMIT, NeverAsked, Pki, call, refused


def trusting(ca: Path | str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def gpu_review(uid: str = "uid-1") -> bytes:
    return body(
        review(pod(limits={"nvidia.com/gpu": "1"}, tolerations=own_pool("acme-eu")), "acme-prod", uid=uid)
    )


def alpn(port: int, cert: Path, offered: list[str]) -> str | None:
    context = trusting(cert)
    context.set_alpn_protocols(offered)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.selected_alpn_protocol()


def test_http2_is_offered_by_alpn_and_both_engines_decide_over_it_and_over_http1(
    wasm_stack: EmbeddedPDP, stack: EmbeddedPDP, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    assert wasm_stack.engine is not None and stack.engine is not None
    for engine, inline in ((wasm_stack.engine, True), (stack.engine, False)):
        webhook = AdmissionWebhook(DecisionPoint(engine))
        with WebhookServer(webhook, cert_file=cert, key_file=key, front="granian") as server:
            assert isinstance(server._http, GranianJsonServer) and server._http.app.inline is inline
            assert alpn(server.port, cert, ["h2", "http/1.1"]) == "h2"
            assert alpn(server.port, cert, ["http/1.1"]) == "http/1.1"
            with httpx.Client(http2=True, verify=trusting(cert), timeout=30) as client:
                url = f"{server.url}/validate?timeout=10s"
                answers = [client.post(url, content=gpu_review(f"uid-{i}")) for i in range(4)]
            for i, answer in enumerate(answers):
                assert answer.http_version == "HTTP/2" and answer.status_code == 200
                doc = answer.json()
                assert doc["kind"] == "AdmissionReview"
                assert doc["response"]["uid"] == f"uid-{i}" and doc["response"]["allowed"] is True
            answer = httpx.post(
                f"{server.url}/validate", content=gpu_review(), verify=trusting(cert), timeout=30
            )
            assert answer.http_version == "HTTP/1.1" and answer.json()["response"]["allowed"] is True
            assert server._http.rsgi.http_versions == {"2": 4, "1.1": 1}


def test_only_client_certificates_of_the_client_ca_are_answered(tmp_path: Path) -> None:
    """rustls requires a client certificate its CA signed, for the TLS client purpose; the caller
    is recorded as verified by the CA (Granian does not show the certificate's names)."""
    from pdp.net.clientauth import ClientAuth

    pki = Pki(tmp_path)
    callers: list[str | None] = []

    class Recording(AdmissionWebhook):
        def review(self, *args: Any, **kwargs: Any) -> Any:
            callers.append(kwargs.get("caller"))
            return super().review(*args, **kwargs)

    with WebhookServer(
        Recording(DecisionPoint(NeverAsked())),
        cert_file=pki.serving.cert,
        key_file=pki.serving.key,
        client_auth=ClientAuth(pki.ca.cert),
        front="granian",
    ) as server:
        assert call(server, pki, pki.apiserver, "/validate", ADMIT) == 200
        assert refused(server, pki, None, "/validate", ADMIT)
        assert refused(server, pki, pki.stranger, "/validate", ADMIT)  # another CA, the same name
        assert refused(server, pki, pki.ca_serving, "/validate", ADMIT)  # a serving certificate
        assert call(server, pki, pki.apiserver, "/validate", ADMIT) == 200
    assert callers == [VERIFIED_CALLER, VERIFIED_CALLER]


def test_client_names_are_never_left_unchecked(tmp_path: Path) -> None:
    """Granian cannot check names: asked to, it refuses to serve; `auto` picks uvicorn for them."""
    from pdp.net.clientauth import ClientAuth

    pki = Pki(tmp_path)
    with pytest.raises(NamesNotCheckable):
        WebhookServer(
            AdmissionWebhook(DecisionPoint(NeverAsked())),
            cert_file=pki.serving.cert,
            key_file=pki.serving.key,
            client_auth=ClientAuth(pki.ca.cert, frozenset({"kube-apiserver"})),
            front="granian",
        )
    parser = argparse.ArgumentParser()
    add_webhook_options(parser)
    ca = ["--webhook-client-ca", str(pki.ca.cert)]
    names = [*ca, "--webhook-client-names", "kube-apiserver"]
    assert webhook_front(parser.parse_args([])) == "granian"
    assert webhook_front(parser.parse_args(ca)) == "granian"
    assert webhook_front(parser.parse_args(names)) == "uvicorn"
    assert webhook_front(parser.parse_args([*names, "--webhook-front", "uvicorn"])) == "uvicorn"
    with pytest.raises(ListenError, match="cannot check --webhook-client-names"):
        webhook_front(parser.parse_args([*names, "--webhook-front", "granian"]))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl (nghttp2) is the HTTP/2 client of this test")
def test_overload_is_answered_503_with_a_reason_and_never_decided(
    tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    """200 calls at once on one HTTP/2 connection (curl; httpx's HTTP/2 cannot take an answer
    that comes before it has sent the body, which a refusal does)."""
    cert, key = tls_files
    decided: list[str] = []

    def route(raw: bytes, query: Query, arrived: float, caller: str | None) -> dict[str, Any]:
        decided.append(query["n"][0])
        time.sleep(0.005)  # inline: holds the event loop, like a decision
        return {"response": {"allowed": True}}

    server = GranianJsonServer(
        {"/x": route}, ssl_context=ServingCertificate(cert, key), inline=True, max_pending=16
    )
    server.start()
    argv = ["curl", "-s", "-i", "--http2", "--cacert", str(cert), "--parallel", "--parallel-max", "200"]
    argv += ["-H", "Content-Type: application/json", "-d", '{"review": 1}']
    argv += ["-w", "%{http_version} %{http_code} %{filename_effective}\\n"]
    for n in range(200):
        argv += [f"{server.url}/x?n={n}", "-o", str(tmp_path / f"{n}.out")]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    finally:
        server.stop()
    rows = [line.split() for line in done.stdout.splitlines()]
    assert len(rows) == 200 and {version for version, _, _ in rows} == {"2"}, done.stdout
    ok = [Path(name).stem for _, code, name in rows if code == "200"]
    refusals = [Path(name) for _, code, name in rows if code == "503"]
    assert len(ok) + len(refusals) == 200 and ok and len(refusals) >= 100, done.stdout
    for path in refusals:
        head, _, payload = path.read_bytes().decode().partition("\r\n\r\n")
        assert "retry-after: 1" in head.lower(), head
        doc = json.loads(payload)
        assert doc["status"] == 503 and doc["error"].startswith("overloaded: "), doc
        assert "allowed" not in payload
    assert sorted(decided) == sorted(ok)


@pytest.fixture()
def echo(tls_files: tuple[Path, Path]) -> Iterator[GranianJsonServer]:
    cert, key = tls_files
    server = GranianJsonServer(
        {"/x": lambda raw, query, arrived, caller: {"n": len(raw)}},
        ssl_context=ServingCertificate(cert, key),
        inline=True,
        max_body=1024,
        header_timeout=1.0,
        body_timeout=1.0,
    )
    server.start()
    yield server
    server.stop()


def test_bodies_above_the_limit_or_without_a_length_are_refused(
    echo: GranianJsonServer, tls_files: tuple[Path, Path]
) -> None:
    cert = tls_files[0]
    with httpx.Client(http2=True, verify=trusting(cert), timeout=10) as client:
        big = client.post(f"{echo.url}/x", content=b"x" * 2048)
        assert big.status_code == 413
        assert big.json()["error"] == "body of 2048 bytes is above the limit of 1024"
        assert client.post(f"{echo.url}/x", content=b"x" * 100).json() == {"n": 100}
        assert client.get(f"{echo.url}/x").status_code == 405
        assert client.get(f"{echo.url}/nothing").status_code == 404
        assert client.get(f"{echo.url}/healthz").json() == {"status": "ok"}
    chunked = httpx.post(f"{echo.url}/x", content=iter([b"x" * 10]), verify=trusting(cert), timeout=10)
    assert chunked.status_code == 411 and chunked.json()["error"] == "Content-Length is required"


def _tls(port: int, cert: Path) -> ssl.SSLSocket:
    context = trusting(cert)
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


@pytest.mark.parametrize("stop_in", ["headers", "body"])
def test_a_client_that_stops_sending_is_dropped_after_its_deadline(
    echo: GranianJsonServer, tls_files: tuple[Path, Path], stop_in: str
) -> None:
    head = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
    with _tls(echo.port, tls_files[0]) as tls:
        tls.sendall(head if stop_in == "headers" else head + b"\r\n" + b"x" * 10)
        started = time.monotonic()
        got = b""
        while chunk := tls.recv(4096):  # until the server closes the connection
            got += chunk
        elapsed = time.monotonic() - started
    assert 0.5 < elapsed < 5, elapsed
    assert b"200 OK" not in got


def test_stalled_tls_handshakes_neither_hold_the_server_nor_stay_open(tls_files: tuple[Path, Path]) -> None:
    """Twice the connection cap of clients that never send a ClientHello: a real client is still
    answered at once, and Granian closes the stalled ones (after ~10 s: its own handshake timeout,
    not `header_timeout`)."""
    cert, key = tls_files
    server = GranianJsonServer(
        {"/x": lambda raw, query, arrived, caller: {"n": len(raw)}},
        ssl_context=ServingCertificate(cert, key),
        inline=True,
        max_connections=4,
    )
    server.start()
    stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(8)]
    try:
        answer = httpx.post(f"{server.url}/x", content=b"{}", verify=trusting(cert), timeout=10)
        assert answer.json() == {"n": 2}
        stalled[0].settimeout(20)
        assert stalled[0].recv(16) == b""  # closed by the server
    finally:
        for sock in stalled:
            sock.close()
        server.stop()


def test_connections_beyond_the_cap_wait_for_a_slot_rather_than_being_reset(
    tls_files: tuple[Path, Path],
) -> None:
    """Beyond `max_connections` Granian leaves new connections in the accept queue; they are
    served when an open one closes."""
    cert, key = tls_files
    server = GranianJsonServer(
        {"/x": lambda raw, query, arrived, caller: {"ok": True}},
        ssl_context=ServingCertificate(cert, key),
        inline=True,
        max_connections=4,
    )
    server.start()
    try:
        results: list[int] = []

        def post() -> None:
            answer = httpx.post(f"{server.url}/x", content=b"{}", verify=trusting(cert), timeout=20)
            results.append(answer.status_code)

        threads = [threading.Thread(target=post) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert results == [200] * 20
    finally:
        server.stop()


def test_requests_arriving_while_the_loop_runs_late_are_refused_not_decided(
    tls_files: tuple[Path, Path],
) -> None:
    """Offered five times what the route can do (each call holds the event loop 0.1 s, a call
    every 20 ms): once the loop's measured lag passes `max_wait`, new requests are answered 503
    with how long they would have waited, and never decided."""
    cert, key = tls_files
    decided: list[str] = []

    def route(raw: bytes, query: Query, arrived: float, caller: str | None) -> dict[str, Any]:
        decided.append(query["n"][0])
        time.sleep(0.1)
        return {"ok": True}

    server = GranianJsonServer(
        {"/x": route}, ssl_context=ServingCertificate(cert, key), inline=True, max_wait=0.2
    )
    server.start()
    answers: dict[str, tuple[int, Any, str | None]] = {}

    def post(n: int) -> None:
        answer = httpx.post(f"{server.url}/x?n={n}", content=b"{}", verify=trusting(cert), timeout=30)
        answers[str(n)] = (answer.status_code, answer.json(), answer.headers.get("retry-after"))

    try:
        threads = []
        for n in range(40):
            threads.append(threading.Thread(target=post, args=(n,)))
            threads[-1].start()
            time.sleep(0.02)
        for thread in threads:
            thread.join(60)
    finally:
        server.stop()
    refusals = {n: (doc, retry) for n, (status, doc, retry) in answers.items() if status == 503}
    assert len(answers) == 40 and refusals, answers
    for doc, retry in refusals.values():
        assert doc["error"].startswith("overloaded: the request waited ") and retry == "1", doc
    assert sorted(decided) == sorted(n for n, (status, _, _) in answers.items() if status == 200)

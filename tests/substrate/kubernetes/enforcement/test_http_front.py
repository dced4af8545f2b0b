"""The uvicorn front of the webhook and the extender: overload refused fast and never as an
admission, and clients that stop sending (mid-request, mid-handshake) dropped after the read
timeout."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pdp.embedded import EmbeddedPDP
from pdp.net.jsonhttp import JsonHttpServer
from pdp.net.servingcert import ServingCertificate
from pdp.point import DecisionPoint
from pdp.substrate.kubernetes.enforcement.webhook import AdmissionWebhook, WebhookServer
from tests.substrate.kubernetes.enforcement.conftest import body, own_pool, pod, review


class GatedEngine:
    """The real engine, holding every evaluation until the gate opens."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = threading.Event()

    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        self.gate.wait(timeout=30)
        return self.inner.evaluate(path, input_doc, timeout=timeout)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def post(port: int, cert: Path, raw: bytes) -> tuple[int, float, Any]:
    context = ssl.create_default_context(cafile=str(cert))
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    started = time.monotonic()
    conn.request("POST", "/validate?timeout=10s", raw, {"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    elapsed = time.monotonic() - started
    conn.close()
    return response.status, elapsed, json.loads(payload)


def test_overload_is_refused_fast_with_503_and_never_admitted(
    stack: EmbeddedPDP, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    engine = GatedEngine(stack.engine)
    gpu = body(review(pod(limits={"nvidia.com/gpu": "1"}, tolerations=own_pool("acme-eu")), "acme-prod"))
    webhook = AdmissionWebhook(DecisionPoint(engine))
    with (
        WebhookServer(webhook, cert_file=cert, key_file=key, max_pending=4, threads=4) as server,
        ThreadPoolExecutor(max_workers=28) as clients,
    ):
        held = [clients.submit(post, server.port, cert, gpu) for _ in range(4)]
        wait_for(lambda: server._http.app.pending == 4)
        # The bound is reached and nothing is decided yet: every further review is refused at once,
        # concurrently, while the engine still holds the first four.
        excess = [clients.submit(post, server.port, cert, gpu) for _ in range(24)]
        refused = [f.result(timeout=30) for f in excess]
        assert not engine.gate.is_set() and all(not f.done() for f in held)
        for status, elapsed, doc in refused:
            assert status == 503, doc
            assert "overloaded" in doc["error"] and "response" not in doc
            assert elapsed < 2.0, elapsed  # answered without waiting for the engine
        assert server._http.app.refused == 24
        engine.gate.set()
        for status, _, doc in (f.result(timeout=30) for f in held):
            assert status == 200 and doc["response"]["allowed"] is True, doc
        status, _, doc = post(server.port, cert, gpu)
        assert status == 200 and doc["response"]["allowed"] is True


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes the connection within `seconds` (reads until EOF)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


@pytest.fixture()
def echo() -> JsonHttpServer:
    server = JsonHttpServer(
        {"/echo": lambda raw, _q, _t, _c: json.loads(raw)}, header_timeout=0.5, body_timeout=0.5
    )
    server.start()
    return server


@pytest.mark.parametrize(
    "partial",
    [
        b"",  # connected, says nothing
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Len",  # headers cut short
        b'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{"a":',  # body cut short
    ],
)
def test_a_client_that_stops_sending_is_dropped_after_the_read_timeout(
    echo: JsonHttpServer, partial: bytes
) -> None:
    try:
        with socket.create_connection(("127.0.0.1", echo.port)) as stalled:
            stalled.sendall(partial)
            started = time.monotonic()
            assert _closed_within(stalled, 10.0)
            assert 0.3 < time.monotonic() - started < 5.0
        conn = http.client.HTTPConnection("127.0.0.1", echo.port, timeout=10)
        conn.request("POST", "/echo", b'{"a": 1}')
        assert json.loads(conn.getresponse().read()) == {"a": 1}
    finally:
        echo.stop()


def test_the_body_has_its_own_deadline_after_the_headers() -> None:
    # Headers within 0.5 s, then a body sent slowly over ~1.5 s: served, as the body's deadline
    # (5 s) counts from the end of the headers, not the header deadline from the connection.
    server = JsonHttpServer(
        {"/echo": lambda raw, _q, _t, _c: json.loads(raw)}, header_timeout=0.5, body_timeout=5
    )
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            payload = b'{"a": 1}'
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload))
            for byte in payload:
                time.sleep(0.2)  # the client's pace, not a synchronization
                sock.sendall(bytes([byte]))
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                chunk = sock.recv(4096)
                assert chunk, f"closed before the answer: {answer!r}"
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"a":1}')
    finally:
        server.stop()


def test_a_stalled_tls_handshake_is_dropped_after_the_read_timeout(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server = JsonHttpServer(
        {}, ssl_context=ServingCertificate(cert, key), header_timeout=0.5, body_timeout=0.5
    )
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as stalled:
            stalled.sendall(b"\x16\x03\x01")  # the start of a ClientHello, and no more
            started = time.monotonic()
            assert _closed_within(stalled, 10.0)
            assert time.monotonic() - started < 5.0
    finally:
        server.stop()


def test_a_body_far_above_the_limit_closes_the_connection(echo: JsonHttpServer) -> None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", echo.port, timeout=10)
        conn.putrequest("POST", "/echo")
        conn.putheader("Content-Length", str(1 << 40))
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413 and response.getheader("connection") == "close"
        assert "above the limit" in json.loads(response.read())["error"]
    finally:
        echo.stop()

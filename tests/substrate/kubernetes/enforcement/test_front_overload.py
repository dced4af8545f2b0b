"""The front under overload: connections beyond the cap reset at accept before any TLS work, a
request that waited too long for the event loop refused with 503 instead of decided, and the
wasm engine's reviews decided inline on the event loop."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pdp.embedded import EmbeddedPDP
from pdp.net.jsonhttp import JsonHttpServer, Query
from pdp.net.servingcert import ServingCertificate
from pdp.point import DecisionPoint
from pdp.substrate.kubernetes.enforcement.webhook import AdmissionWebhook, WebhookServer
from tests.conftest import EXAMPLES, embedded_settings
from tests.substrate.kubernetes.enforcement.conftest import body, own_pool, pod, review
from tests.substrate.kubernetes.enforcement.test_http_front import post, wait_for


def _gate(server: JsonHttpServer) -> Any:
    return server._server.servers[0]


def test_a_connection_beyond_the_budget_evicts_the_quietest_not_the_newcomer(
    tls_files: tuple[Path, Path],
) -> None:
    cert, key = tls_files
    server = JsonHttpServer(
        {"/x": lambda raw, query, arrived, caller: {"ok": True}},
        ssl_context=ServingCertificate(cert, key),
        max_connections=2,
        header_timeout=30,
    )
    server.start()
    try:
        # Two clients that connect and never start the handshake fill the budget; the first is
        # the quieter, so a real client's connection takes its place and is served.
        first = socket.create_connection(("127.0.0.1", server.port))
        wait_for(lambda: _gate(server).open == 1)
        second = socket.create_connection(("127.0.0.1", server.port))
        wait_for(lambda: _gate(server).open == 2)
        context = ssl.create_default_context(cafile=str(cert))
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)
        conn.request("POST", "/x", b"{}", {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200 and json.loads(response.read()) == {"ok": True}
        first.settimeout(10)
        assert first.recv(1) == b"", "the quietest connection was not closed"
        assert _gate(server).evicted == 1 and _gate(server).refused == 0
        assert _gate(server).open == 2  # the second holder and the client's keep-alive connection
        conn.close()
        second.close()
        wait_for(lambda: _gate(server).open == 0)
        first.close()
    finally:
        server.stop()


def test_connections_beyond_a_budget_all_being_answered_are_reset_before_the_handshake(
    tls_files: tuple[Path, Path],
) -> None:
    cert, key = tls_files
    release = threading.Event()
    deciding = threading.Semaphore(0)

    def slow(raw: bytes, query: Query, arrived: float, caller: str | None) -> dict[str, Any]:
        deciding.release()
        release.wait(30)
        return {"ok": True}

    server = JsonHttpServer({"/x": slow}, ssl_context=ServingCertificate(cert, key), max_connections=2)
    server.start()
    context = ssl.create_default_context(cafile=str(cert))

    def call() -> int:
        conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=30)
        try:
            conn.request("POST", "/x", b"{}", {"Content-Type": "application/json"})
            return conn.getresponse().status
        finally:
            conn.close()

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = [pool.submit(call) for _ in range(2)]
            for _ in range(2):  # both requests whole and being answered
                assert deciding.acquire(timeout=10)
            started = time.monotonic()
            try:
                # On a loaded machine the reset can arrive before connect() has looked at the socket.
                with socket.create_connection(("127.0.0.1", server.port), timeout=10) as third:
                    got = third.recv(1)
            except ConnectionResetError:
                got = b""
            assert got == b"" and time.monotonic() - started < 5, (
                "the third connection was not refused at once"
            )
            assert _gate(server).refused == 1 and _gate(server).evicted == 0
            release.set()
            assert [answer.result(30) for answer in answers] == [200, 200]
        wait_for(lambda: _gate(server).open == 0)
    finally:
        release.set()
        server.stop()


def test_a_request_that_waited_too_long_for_the_loop_is_refused_not_decided() -> None:
    decided: list[str] = []
    first_running = threading.Event()

    def route(raw: bytes, query: Query, arrived: float, caller: str | None) -> dict[str, Any]:
        name = json.loads(raw)["name"]
        decided.append(name)
        if name == "a":
            first_running.set()
            time.sleep(0.6)  # inline: holds the event loop
        elif name == "b":
            time.sleep(0.6)
        return {"name": name}

    server = JsonHttpServer({"/x": route}, inline=True, max_wait=0.3)
    server.start()
    conns = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=20) for _ in range(3)]

    def call(conn: http.client.HTTPConnection, name: str) -> tuple[int, dict[str, Any]]:
        conn.request("POST", "/x", json.dumps({"name": name}).encode(), {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())

    try:
        for conn in conns:  # keep-alive connections, so no accept or parse is pending later
            assert call(conn, "warm")[0] == 200
        with ThreadPoolExecutor(max_workers=3) as pool:
            a = pool.submit(call, conns[0], "a")
            assert first_running.wait(10)
            # b and c arrive while a holds the loop; when it is free both are read at once, b is
            # decided (0.6 s) and c, which then waited more than max_wait, is refused.
            b = pool.submit(call, conns[1], "b")
            time.sleep(0.1)
            c = pool.submit(call, conns[2], "c")
            results = {"a": a.result(20), "b": b.result(20), "c": c.result(20)}
        assert results["a"][0] == 200 and results["b"][0] == 200
        status, doc = results["c"]
        assert status == 503 and "waited" in doc["error"], doc
        assert "c" not in decided
    finally:
        for conn in conns:
            conn.close()
        server.stop()


@pytest.fixture(scope="module")
def wasm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPDP]:
    root = tmp_path_factory.mktemp("wasm")
    shutil.copytree(EXAMPLES, root / "examples")
    with EmbeddedPDP(embedded_settings(root, engine="wasm")) as running:
        yield running


def test_the_wasm_engine_decides_inline_and_the_sidecar_on_threads(
    wasm_stack: EmbeddedPDP, stack: EmbeddedPDP, tls_files: tuple[Path, Path]
) -> None:
    cert, key = tls_files
    assert wasm_stack.engine is not None and stack.engine is not None
    wasm_point = DecisionPoint(wasm_stack.engine)
    assert not wasm_point.waits_on_io and DecisionPoint(stack.engine).waits_on_io
    gpu = body(review(pod(limits={"nvidia.com/gpu": "1"}, tolerations=own_pool("acme-eu")), "acme-prod"))
    us = body(
        review(
            pod(limits={"nvidia.com/gpu": "1"}, node_selector={"topology.kubernetes.io/region": "us-east-1"}),
            "acme-prod",
        )
    )
    with WebhookServer(AdmissionWebhook(wasm_point), cert_file=cert, key_file=key) as server:
        assert server._http.app.inline
        threads = {t.name for t in threading.enumerate() if t.name.startswith("gpupaas-webhook_")}
        with ThreadPoolExecutor(max_workers=8) as clients:
            answers = list(clients.map(lambda raw: post(server.port, cert, raw), [gpu, us] * 8))
        for i, (status, _, doc) in enumerate(answers):
            assert status == 200
            assert doc["response"]["allowed"] is (i % 2 == 0), doc
        # no decision thread was started for them
        after = {t.name for t in threading.enumerate() if t.name.startswith("gpupaas-webhook_")}
        assert after == threads == set()
    with WebhookServer(AdmissionWebhook(DecisionPoint(stack.engine)), cert_file=cert, key_file=key) as server:
        assert not server._http.app.inline
        status, _, doc = post(server.port, cert, gpu)
        assert status == 200 and doc["response"]["allowed"] is True


def test_the_extender_answers_inline_with_the_wasm_engine(
    wasm_stack: EmbeddedPDP, stack: EmbeddedPDP
) -> None:
    from pdp.substrate.kubernetes.enforcement.extender import ExtenderServer, SchedulerExtender
    from tests.substrate.kubernetes.enforcement.extender.test_scheduler_extender import (
        acme_pod,
        passed,
        with_nodes,
    )

    assert wasm_stack.engine is not None and stack.engine is not None
    raw = json.dumps(with_nodes(acme_pod())).encode()
    with ExtenderServer(SchedulerExtender(DecisionPoint(wasm_stack.engine))) as server:
        assert server._http.app.inline
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        for _ in range(3):
            conn.request("POST", "/filter", raw)
            response = conn.getresponse()
            assert response.status == 200 and passed(json.loads(response.read())) == [
                "eu-acme-1",
                "eu-acme-2",
            ]
        conn.close()
        assert not [t for t in threading.enumerate() if t.name.startswith("gpupaas-extender_")]
    with ExtenderServer(SchedulerExtender(DecisionPoint(stack.engine))) as server:
        assert not server._http.app.inline


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "tcp"])
def test_a_response_head_and_body_go_out_in_one_write(tls: bool) -> None:
    from pdp.net.serving.one_write import OneWrite

    class Recording:
        def __init__(self) -> None:
            self.writes: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            self.writes.append(data)

        def writelines(self, pieces: tuple[bytes, ...]) -> None:
            # One vectored send: recorded as the one write the peer receives.
            self.writes.append(b"".join(pieces))

        def get_extra_info(self, name: str) -> object:
            return object() if name == "sslcontext" and tls else None

        def close(self) -> None:
            self.closed = True

        def is_closing(self) -> bool:
            return self.closed

    transport = Recording()
    one = OneWrite(transport)  # type: ignore[arg-type]
    one.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert transport.writes == []
    one.write(b"{}")
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    # an interim 100 Continue is not held; a head without a body is written on close
    other = Recording()
    two = OneWrite(other)  # type: ignore[arg-type]
    two.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    two.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
    assert other.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"] and not two.is_closing()
    two.close()
    assert other.writes[-1].startswith(b"HTTP/1.1 413") and other.closed

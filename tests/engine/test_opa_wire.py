"""The sidecar engine's raw HTTP/1.1 exchange (pdp/engine/opa_wire.py): against the real OPA it
decides like http.client did and keeps one connection per thread, and it reads chunked answers
(a batch); against a loopback server that misbehaves it fails closed (a DENY with ENGINE_*), and
reconnects when the server closes the connection (Connection: close, or an idle keep-alive
connection closed between two calls). The sidecar's OPA runs with its GC target."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from pdp.embedded import EmbeddedPDP
from pdp.engine.opa_http import OpaHttpEngine
from pdp.opa.sidecar import OpaSidecar, SidecarSettings
from pdp.point import DecisionPoint
from tests.conftest import EXAMPLES, embedded_settings
from tests.ports import free_port

RESULT = "gpupaas/decision/result"
INTENTS = [json.loads(p.read_text()) for p in sorted((EXAMPLES / "intents").glob("*.json"))]


@pytest.fixture(scope="module")
def tcp_stack(tmp_path_factory: pytest.TempPathFactory, opa_binary: Path) -> Iterator[EmbeddedPDP]:
    """The real supervised OPA sidecar on the example bundle, listening on loopback TCP."""
    root = tmp_path_factory.mktemp("wire")
    shutil.copytree(EXAMPLES, root / "examples")
    with EmbeddedPDP(embedded_settings(root, opa_addr=f"127.0.0.1:{free_port()}")) as running:
        yield running


def _stdlib_evaluate(addr: str, path: str, input_doc: object) -> object:
    """The engine's previous client: one http.client request, for comparison."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    body = orjson.dumps({"input": input_doc})
    conn.request("POST", f"/v1/data/{path}", body, {"Content-Type": "application/json"})
    try:
        return orjson.loads(conn.getresponse().read())["result"]
    finally:
        conn.close()


def test_decides_like_http_client_over_one_kept_connection_per_thread(tcp_stack: EmbeddedPDP) -> None:
    assert tcp_stack.sidecar is not None
    addr = tcp_stack.sidecar.addr
    engine = OpaHttpEngine(addr)
    try:
        for intent in INTENTS:
            assert engine.evaluate(RESULT, intent, timeout=10) == _stdlib_evaluate(addr, RESULT, intent)
        one_each = [engine.evaluate(RESULT, intent, timeout=10) for intent in INTENTS]
        batch = {"intents": INTENTS * 25}  # a large answer, which OPA sends chunked
        assert engine.evaluate("gpupaas/decision/batch", batch, timeout=30) == one_each * 25
        threads = [
            threading.Thread(target=engine.evaluate, args=(RESULT, INTENTS[0]), kwargs={"timeout": 10})
        ]
        threads += [
            threading.Thread(target=engine.evaluate, args=(RESULT, INTENTS[1]), kwargs={"timeout": 10})
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # every call of this thread used one connection; each other thread opened its own
        assert len(engine._connections) == 3
    finally:
        engine.close()


@contextmanager
def loopback_server(answer: Callable[[socket.socket, int], None]) -> Iterator[tuple[str, list[int]]]:
    """A TCP server calling `answer(connection, request number)` for every request it reads;
    yields its address and the number of requests seen per connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    per_connection: list[int] = []

    def serve(conn: socket.socket) -> None:
        index = len(per_connection)
        per_connection.append(0)
        buffered = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffered:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffered += data
                head, buffered = buffered.split(b"\r\n\r\n", 1)
                length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
                while len(buffered) < length:
                    buffered += conn.recv(65536)
                buffered = buffered[length:]
                per_connection[index] += 1
                answer(conn, sum(per_connection))
                if conn.fileno() < 0:
                    return

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}", per_connection
    finally:
        listener.close()


OK = b'{"result": {"outcome": "ALLOW"}}'


def _ok(conn: socket.socket, extra: bytes = b"") -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(OK), extra, OK))


def test_connection_close_answers_are_read_and_the_next_call_reconnects() -> None:
    def answer(conn: socket.socket, _: int) -> None:
        _ok(conn, b"Connection: close\r\n")
        conn.close()

    with loopback_server(answer) as (addr, per_connection):
        engine = OpaHttpEngine(addr)
        assert [engine.evaluate(RESULT, {}, timeout=5) for _ in range(3)] == [{"outcome": "ALLOW"}] * 3
        engine.close()
    assert per_connection == [1, 1, 1]


def test_an_idle_connection_the_server_closed_is_retried_once_on_a_new_one() -> None:
    def answer(conn: socket.socket, number: int) -> None:
        _ok(conn)
        if number == 1:  # closes the kept-alive connection without saying so
            conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    with loopback_server(answer) as (addr, per_connection):
        engine = OpaHttpEngine(addr)
        assert engine.evaluate(RESULT, {}, timeout=5) == {"outcome": "ALLOW"}
        assert engine.evaluate(RESULT, {}, timeout=5) == {"outcome": "ALLOW"}
        engine.close()
    assert per_connection == [1, 1]


def test_an_answer_that_is_not_http_is_an_engine_deny() -> None:
    def answer(conn: socket.socket, _: int) -> None:
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    with loopback_server(answer) as (addr, _):
        decision = DecisionPoint(OpaHttpEngine(addr)).decide(INTENTS[0])
    assert decision.outcome == "DENY" and decision.reason_codes == ["ENGINE_UNAVAILABLE"]
    assert "not HTTP" in decision.reasons[0].message


def test_a_server_that_never_answers_is_an_engine_timeout() -> None:
    with loopback_server(lambda conn, _: None) as (addr, _):
        engine = OpaHttpEngine(addr)
        decision = DecisionPoint(engine).decide(INTENTS[0])
        engine.close()
    assert decision.outcome == "DENY" and decision.reason_codes == ["ENGINE_TIMEOUT"]


def _environ(pid: int) -> dict[str, str]:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(p.decode().split("=", 1) for p in pairs if b"=" in p)


def test_the_sidecar_runs_opa_with_its_gc_target_unless_the_environment_sets_one(
    tcp_stack: EmbeddedPDP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tcp_stack.sidecar is not None and tcp_stack.sidecar.pid is not None
    assert _environ(tcp_stack.sidecar.pid)["GOGC"] == "400"
    monkeypatch.setenv("GOGC", "150")
    keys = tcp_stack.keys
    settings = SidecarSettings("http://127.0.0.1:1", keys.public_key, tmp_path / "opa")
    with OpaSidecar(settings) as opa:
        assert opa.pid is not None
        assert _environ(opa.pid)["GOGC"] == "150"

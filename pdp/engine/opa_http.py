"""OPA over its REST Data API (POST /v1/data/<path>), the sidecar engine.

Each calling thread keeps its own keep-alive connection (the gRPC server's worker threads are
long-lived): over TCP or a unix socket a raw HTTP/1.1 exchange parsed by httptools
(pdp/engine/opa_wire.py), over TLS http.client. On this path the client's own CPU is paid once per
decision under the GIL (httpx 882, http.client 175-342, the raw exchange ~60 us per call,
docs/performance.md). Every call gets the time left in the caller's deadline as its socket timeout.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import orjson

from pdp.engine.base import EngineFailure, EngineTimeout, EngineUnavailable, NoActiveBundle
from pdp.engine.opa_wire import Connect, Connection, StdlibConnection, WireConnection


def connection_factory(addr: str) -> tuple[str, Connect]:
    """(base path, a function making a new connection with a timeout) for an OPA address:
    "unix:///path/opa.sock", "host:port" or an http(s) URL."""
    if addr.startswith("unix://"):
        path = addr.removeprefix("unix://")
        return "", lambda timeout: WireConnection.unix(path, timeout)
    url = urlsplit(addr if addr.startswith(("http://", "https://")) else f"http://{addr}")
    host, port = url.hostname or "127.0.0.1", url.port
    if url.scheme == "https":
        context = ssl.create_default_context()
        return url.path.rstrip("/"), lambda timeout: StdlibConnection(
            http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        )
    return url.path.rstrip("/"), lambda timeout: WireConnection.tcp(host, port or 80, timeout)


class OpaHttpEngine:
    def __init__(self, addr: str) -> None:
        """`addr`: "unix:///path/opa.sock", "host:port" or an http(s) URL."""
        self.addr = addr
        self._base, self._connect = connection_factory(addr)
        url = urlsplit(addr if addr.startswith(("http://", "https://")) else f"http://{addr}")
        self._host = "opa" if addr.startswith("unix://") else url.netloc
        self._heads: dict[str, bytes] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[Connection] = set()

    def _head(self, path: str) -> bytes:
        head = self._heads.get(path)
        if head is None:
            target = f"{self._base}/v1/data/{path}"
            lines = [f"POST {target} HTTP/1.1", f"Host: {self._host}", "Content-Type: application/json"]
            head = self._heads[path] = "\r\n".join([*lines, "Accept: application/json"]).encode()
        return head

    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        body = orjson.dumps({"input": input_doc})
        head = self._head(path)
        conn: Connection | None = getattr(self._local, "conn", None)
        # A keep-alive connection OPA has closed (idle timeout, restart) fails on first use; the
        # evaluation has no side effects, so it is retried once on a new connection.
        attempts = 2 if conn is not None else 1
        for attempt in range(attempts):
            try:
                if conn is None:
                    conn = self._new_connection(max(deadline - time.monotonic(), 0.001))
                status, payload = conn.exchange(head, body, max(deadline - time.monotonic(), 0.001))
                break
            except TimeoutError as exc:
                self._drop(conn)
                raise EngineTimeout(f"OPA at {self.addr} did not answer within {timeout:.3f}s") from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop(conn)
                conn = None
                if attempt + 1 < attempts and time.monotonic() < deadline:
                    continue
                raise EngineUnavailable(f"OPA at {self.addr} is unreachable: {exc}") from exc
            except BaseException:
                # Whatever interrupted the exchange, its answer may still arrive on this
                # connection; it must never be read as the answer to a later request.
                self._drop(conn)
                raise
        if status != 200:
            raise EngineFailure(f"OPA answered HTTP {status}: {payload[:300].decode(errors='replace')}")
        try:
            result = orjson.loads(payload)
        except ValueError as exc:
            raise EngineFailure("OPA answered with a body that is not JSON") from exc
        if not isinstance(result, dict) or "result" not in result:
            # Undefined: OPA is up but has no active bundle (or the rule does not exist).
            raise NoActiveBundle(f"OPA at {self.addr} has no decision at {path}: no active bundle")
        return result["result"]

    def _new_connection(self, timeout: float) -> Connection:
        conn = self._connect(timeout)
        self._local.conn = conn
        with self._lock:
            self._connections.add(conn)
        return conn

    def _drop(self, conn: Connection | None) -> None:
        self._local.conn = None
        if conn is not None:
            conn.close()
            with self._lock:
                self._connections.discard(conn)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            conn.close()

"""OPA over its REST Data API (POST /v1/data/<path>), the sidecar engine.

Each calling thread keeps its own keep-alive connection (the gRPC server's worker threads are
long-lived), built on the standard library's http.client: on this path the client's own CPU is
paid once per decision under the GIL, and http.client costs a third of what httpx does (342 vs
882 us per evaluation, docs/performance.md). Every call gets the time left in the caller's
deadline as its socket timeout.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import orjson

from pdp.engine.base import EngineFailure, EngineTimeout, EngineUnavailable, NoActiveBundle

_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (the embedded sidecar listens on one)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("opa", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def connection_factory(addr: str) -> tuple[str, Any]:
    """(base path, a function making a new connection with a timeout) for an OPA address:
    "unix:///path/opa.sock", "host:port" or an http(s) URL."""
    if addr.startswith("unix://"):
        path = addr.removeprefix("unix://")
        return "", lambda timeout: _UnixHTTPConnection(path, timeout)
    url = urlsplit(addr if addr.startswith(("http://", "https://")) else f"http://{addr}")
    host, port = url.hostname or "127.0.0.1", url.port
    if url.scheme == "https":
        context = ssl.create_default_context()
        return url.path.rstrip("/"), lambda timeout: http.client.HTTPSConnection(
            host, port, timeout=timeout, context=context
        )
    return url.path.rstrip("/"), lambda timeout: http.client.HTTPConnection(host, port, timeout=timeout)


class OpaHttpEngine:
    def __init__(self, addr: str) -> None:
        """`addr`: "unix:///path/opa.sock", "host:port" or an http(s) URL."""
        self.addr = addr
        self._base, self._connect = connection_factory(addr)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: set[http.client.HTTPConnection] = set()

    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        body = orjson.dumps({"input": input_doc})
        url = f"{self._base}/v1/data/{path}"
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        # A keep-alive connection OPA has closed (idle timeout, restart) fails on first use; the
        # evaluation has no side effects, so it is retried once on a new connection.
        attempts = 2 if conn is not None else 1
        for attempt in range(attempts):
            if conn is None:
                conn = self._new_connection(max(deadline - time.monotonic(), 0.001))
            try:
                self._set_timeout(conn, max(deadline - time.monotonic(), 0.001))
                conn.request("POST", url, body, _HEADERS)
                resp = conn.getresponse()
                status, payload = resp.status, resp.read()
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

    def _new_connection(self, timeout: float) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection = self._connect(timeout)
        self._local.conn = conn
        with self._lock:
            self._connections.add(conn)
        return conn

    @staticmethod
    def _set_timeout(conn: http.client.HTTPConnection, timeout: float) -> None:
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None
        with self._lock:
            self._connections.discard(conn)

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            conn.close()

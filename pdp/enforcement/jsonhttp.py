"""A small JSON-over-HTTP(S) server for the enforcement points (webhook, scheduler extender).

The API server and kube-scheduler keep connections alive and retry on their own, so the server's
job is to stay up: every request gets an answer (411/413/404/405/400/500 with a JSON message),
a slow client only ever holds its own thread until the read timeout, and TLS handshakes happen
on the connection's thread, never on the accept loop.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

import orjson

from pdp.enforcement.servingcert import ServingCertificate

log = logging.getLogger(__name__)

Query = Mapping[str, list[str]]
Route = Callable[[bytes, Query], Any]
"""A POST route: the body and the query string in, a JSON document out (status 200); raises
HttpError for another status."""

DEFAULT_MAX_BODY = 3 * 1024 * 1024
DEFAULT_READ_TIMEOUT = 10.0
_DRAIN_FACTOR = 4


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        # Every read is bounded, so a client that stops sending mid-request frees its thread.
        self.request.settimeout(self.server.read_timeout)
        # A response goes out as two writes (headers, then body); with Nagle's algorithm the
        # body waits for the client's delayed ACK of the headers, about 40 ms on Linux, which
        # was most of every webhook and extender call's latency on a keep-alive connection.
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def _send(self, status: int, doc: Any) -> None:
        body = orjson.dumps(doc)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the client went away; nothing left to tell it

    def _fail(self, status: int, message: str, *, close: bool = False) -> None:
        if close:
            # The body was not read, so the stream is no longer at a request boundary.
            self.close_connection = True
        self._send(status, {"error": message, "status": status})

    def _path(self) -> tuple[str, str]:
        parts = urlsplit(self.path)
        return parts.path, parts.query

    def do_POST(self) -> None:
        path, query = self._path()
        route = self.server.routes.get(path)
        if route is None:
            known = path == "/healthz"
            self._fail(
                HTTPStatus.METHOD_NOT_ALLOWED if known else HTTPStatus.NOT_FOUND,
                f"no POST route {path}",
                close=not self._discard_body(),
            )
            return
        header = self.headers.get("Content-Length")
        if header is None or self.headers.get("Transfer-Encoding"):
            self._fail(HTTPStatus.LENGTH_REQUIRED, "Content-Length is required", close=True)
            return
        try:
            length = int(header)
            if length < 0:
                raise ValueError(header)
        except ValueError:
            self._fail(HTTPStatus.BAD_REQUEST, f"Content-Length {header!r} is not a length", close=True)
            return
        if length > self.server.max_body:
            # Closing with the body unread makes TCP reset the connection, and the client would
            # lose the 413; a body within reason is read and dropped first, one chunk at a time.
            drained = length <= _DRAIN_FACTOR * self.server.max_body and self._discard(length)
            self._fail(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes is above the limit of {self.server.max_body}",
                close=not drained,
            )
            return
        try:
            body = self.rfile.read(length)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        if len(body) < length:
            self.close_connection = True
            return
        try:
            doc = route(body, parse_qs(query))
            status: int = HTTPStatus.OK
        except HttpError as exc:
            status, doc = exc.status, {"error": exc.message, "status": exc.status}
        except Exception as exc:
            log.exception("%s %s failed", self.command, path)
            status = HTTPStatus.INTERNAL_SERVER_ERROR
            doc = {"error": f"internal error: {type(exc).__name__}", "status": 500}
        self._send(status, doc)

    def _discard(self, length: int) -> bool:
        try:
            while length > 0:
                chunk = self.rfile.read(min(length, 64 * 1024))
                if not chunk:
                    return False
                length -= len(chunk)
        except OSError:
            return False
        return True

    def _discard_body(self) -> bool:
        """Drop the body of a request that is refused anyway; False when it cannot be."""
        header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or not header or not header.isdigit():
            return header is None and not self.headers.get("Transfer-Encoding")
        length = int(header)
        return length <= _DRAIN_FACTOR * self.server.max_body and self._discard(length)

    def do_GET(self) -> None:
        path, _ = self._path()
        if path == "/healthz":
            self._send(HTTPStatus.OK, {"status": "ok"})
        else:
            self._not_post()

    def _not_post(self) -> None:
        path, _ = self._path()
        close = not self._discard_body()
        if path in self.server.routes or path == "/healthz":
            self._fail(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not allowed on {path}", close=close)
        else:
            self._fail(HTTPStatus.NOT_FOUND, f"no route {path}", close=close)

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_post

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        routes: Mapping[str, Route],
        *,
        tls: ssl.SSLContext | ServingCertificate | None,
        max_body: int,
        read_timeout: float,
    ) -> None:
        self.routes = dict(routes)
        # Asked once per connection rather than held, so a reloaded certificate reaches the next
        # connection while open ones keep the context they were wrapped with.
        self.tls = tls
        # Open connections, so stop() can end keep-alive sessions too: a stopped server must stop
        # answering, not keep serving the clients that happened to be connected.
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        self.max_body = max_body
        self.read_timeout = read_timeout
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs on the connection's own thread (ThreadingMixIn), so a slow or broken TLS
        # handshake never blocks accepting other connections.
        request.settimeout(self.read_timeout)
        conn = request
        if self.tls is not None:
            context = self.tls.context if isinstance(self.tls, ServingCertificate) else self.tls
            try:
                conn = context.wrap_socket(request, server_side=True)
            except OSError as exc:
                log.debug("TLS handshake with %s failed: %s", client_address, exc)
                return
        # wrap_socket detaches the plain socket, so the connection to track is the TLS one.
        with self.connections_lock:
            self.connections.add(conn)
        try:
            super().finish_request(conn, client_address)
        finally:
            with self.connections_lock:
                self.connections.discard(conn)
            if conn is not request:
                conn.close()

    def close_connections(self) -> None:
        with self.connections_lock:
            open_now = list(self.connections)
        for conn in open_now:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("connection from %s failed", client_address)


class JsonHttpServer:
    """Serves `routes` (POST, JSON) plus GET /healthz on a background thread; over TLS with a fixed
    context, or with a ServingCertificate, whose files are watched while the server runs."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | ServingCertificate | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        name: str = "gpupaas-http",
    ) -> None:
        self.certificate = ssl_context if isinstance(ssl_context, ServingCertificate) else None
        self._httpd = _Server(
            (host, port), routes, tls=ssl_context, max_body=max_body, read_timeout=read_timeout
        )
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=name, daemon=True)
        self.tls = ssl_context is not None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._httpd.server_address[0])
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def start(self) -> None:
        if self.certificate is not None:
            self.certificate.start()
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        if self.certificate is not None:
            self.certificate.stop()


class HttpService:
    """What the webhook and the extender servers share: a JsonHttpServer with its address,
    start/stop, and use as a context manager. Subclasses set `_http` in their constructor."""

    _http: JsonHttpServer

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def certificate(self) -> ServingCertificate | None:
        """The serving certificate and its reload status; None without TLS."""
        return self._http.certificate

    def start(self) -> Self:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""The JSON-over-HTTP(S) front of the enforcement points (webhook, scheduler extender): a small
ASGI app served by uvicorn (httptools parser, uvloop event loop) on a background thread.

The API server and kube-scheduler keep connections alive and retry on their own, so the server's
job is to stay up and answer fast: every request gets an answer (411/413/404/405/400/500/503 with
a JSON message); a client that stops sending is dropped after `header_timeout` seconds for the
TLS handshake, request line and headers, or `body_timeout` for the body (serving.py); idle
keep-alive connections are closed after `keep_alive` seconds.

Overload is refused, not queued: beyond `max_pending` requests being decided (queued for or
running on the decision threads, or with inline routes queued for the event loop) a request is
answered 503 at once; a request that waited more
than `max_wait` seconds for the event loop is answered 503 instead of being decided. Open
connections are kept within `max_connections`: one more evicts the quietest connection not being
answered, and is reset at accept, before the TLS handshake, only when every one is being answered
(serving.py); so connections that send nothing or half a request cannot starve new ones. A 503 is
never an admission: the API server treats any webhook answer that is not an AdmissionReview as
a call failure, and with `failurePolicy: Fail` (deploy/) a failed call rejects the object;
kube-scheduler treats an extender error as a failed scheduling cycle and retries the pod.

Routes are plain functions. By default they run on a small thread pool: deciding through the OPA
sidecar is an HTTP call, and the event loop must keep accepting and parsing meanwhile. `inline`
routes run on the event loop itself: for a decision that only uses the CPU (the wasm engine) the
handoff to a thread and back (a future, a loop wake-up, two GIL switches) cost more than the
decision's own Python, and one thread deciding at a time is all one process can do anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any, Self, cast
from urllib.parse import parse_qs

import orjson
import uvicorn

from pdp.net.listen import bound_url
from pdp.net.serving import (
    ARRIVED,
    CALLER,
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    QUEUED,
    Deadlines,
    GatedServer,
    listening_socket,
    loop_factory,
    protocol_class,
    switching_context,
)
from pdp.net.servingcert import ServingCertificate

log = logging.getLogger(__name__)

Query = Mapping[str, list[str]]
Route = Callable[[bytes, Query, float, str | None], Any]
"""A POST route: the body, the query string, the request's arrival (time.monotonic()) and who
called as its client certificate says (`substrate:NAME`; None without client authentication) in,
a JSON document out (status 200), or `bytes` already holding its JSON text; raises HttpError for
another status."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

DEFAULT_MAX_BODY = 3 * 1024 * 1024
DEFAULT_KEEP_ALIVE = 5
DEFAULT_MAX_PENDING = 256
DEFAULT_MAX_CONNECTIONS = 128
DEFAULT_MAX_WAIT = 1.0
DEFAULT_THREADS = 8
DEFAULT_GRACEFUL_SHUTDOWN = 5
# A body above the limit but within this factor of it is left for the parser to read and drop, so
# the connection stays usable; a larger one closes the connection after the 413.
_DRAIN_FACTOR = 4


_TOO_DEEP = "the body is nested too deeply to be read (arrays and objects more than ~1,000 levels deep)"


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class JsonApp:
    """The ASGI app: `routes` (POST, JSON) plus GET /healthz."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        max_body: int,
        max_pending: int,
        threads: int,
        name: str,
        inline: bool = False,
        max_wait: float = DEFAULT_MAX_WAIT,
    ) -> None:
        self.routes = dict(routes)
        self.max_body = max_body
        self.max_pending = max_pending
        self.max_wait = max_wait
        self.inline = inline
        self.pending = 0  # touched on the event loop thread only
        self.refused = 0
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        arrived = scope.get(ARRIVED) or time.monotonic()
        path, method = scope["path"], scope["method"]
        route = self.routes.get(path)
        if method == "POST" and route is not None:
            await self._post(route, scope, receive, send, arrived)
        elif method == "GET" and path == "/healthz":
            await _send(send, HTTPStatus.OK, orjson.dumps({"status": "ok"}))
        elif path in self.routes or path == "/healthz":
            msg = f"{method} is not allowed on {path}"
            await _fail(send, HTTPStatus.METHOD_NOT_ALLOWED, msg, close=not self._drains(scope))
        else:
            await _fail(send, HTTPStatus.NOT_FOUND, f"no route {path}", close=not self._drains(scope))

    def _drains(self, scope: Scope) -> bool:
        """Whether the body of a refused request is small enough to be read and dropped."""
        if _header(scope, b"transfer-encoding"):
            return False
        header = _header(scope, b"content-length")
        return header is None or (header.isdigit() and int(header) <= _DRAIN_FACTOR * self.max_body)

    async def _post(self, route: Route, scope: Scope, receive: Receive, send: Send, arrived: float) -> None:
        header = _header(scope, b"content-length")
        if header is None or _header(scope, b"transfer-encoding"):
            await _fail(send, HTTPStatus.LENGTH_REQUIRED, "Content-Length is required", close=True)
            return
        if not header.isdigit():
            msg = f"Content-Length {header!r} is not a length"
            await _fail(send, HTTPStatus.BAD_REQUEST, msg, close=True)
            return
        length = int(header)
        if length > self.max_body:
            msg = f"body of {length} bytes is above the limit of {self.max_body}"
            await _fail(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, msg, close=not self._drains(scope))
            return
        waited = time.monotonic() - arrived
        # Inline, one request runs at a time: the queue is the requests parsed before this one.
        busy = scope.get(QUEUED, 0) if self.inline else self.pending
        if busy >= self.max_pending or waited > self.max_wait:
            # Refused before the body is read or anything is decided: overload costs the server
            # almost nothing and the caller learns at once (the API server fails the call, and
            # with failurePolicy Fail that is a rejection, never an admission).
            self.refused += 1
            if waited > self.max_wait:
                why = f"the request waited {waited:.2f} s for the server"
            else:
                why = f"{busy} requests are being decided"
            msg = f"overloaded: {why}; retry"
            await _fail(send, HTTPStatus.SERVICE_UNAVAILABLE, msg, headers=[(b"retry-after", b"1")])
            return
        self.pending += 1
        try:
            body = await _read_body(receive, length)
            if body is None:
                return  # the client went away
            query = parse_qs(bytes(scope["query_string"]).decode("latin-1"))
            args = (route, body, query, arrived, scope.get(CALLER), scope["path"])
            if self.inline:
                status, payload = _call(*args)
            else:
                status, payload = await asyncio.get_running_loop().run_in_executor(self.pool, _call, *args)
        finally:
            self.pending -= 1
        await _send(send, status, payload)


def _call(
    route: Route, body: bytes, query: Query, arrived: float, caller: str | None, path: str
) -> tuple[int, bytes]:
    """The route's answer and status, serialized on the decision thread."""
    try:
        answer = route(body, query, arrived, caller)
        return HTTPStatus.OK, answer if type(answer) is bytes else orjson.dumps(answer)
    except HttpError as exc:
        return exc.status, orjson.dumps({"error": exc.message, "status": exc.status})
    except RecursionError:
        # Nothing here recurses but over the request's own nesting (msgspec per level, code that
        # walks the decoded objects): a body nested deeper than Python's recursion limit (~1,000
        # levels; orjson reads 1,024) is bad input, not a fault of the server.
        log.warning("POST %s: the body is nested too deeply to be read", path)
        doc = {"error": _TOO_DEEP, "status": HTTPStatus.BAD_REQUEST}
        return HTTPStatus.BAD_REQUEST, orjson.dumps(doc)
    except Exception as exc:
        log.exception("POST %s failed", path)
        doc = {"error": f"internal error: {type(exc).__name__}", "status": 500}
        return HTTPStatus.INTERNAL_SERVER_ERROR, orjson.dumps(doc)


async def _read_body(receive: Receive, length: int) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body if len(body) == length else None


async def _send(
    send: Send,
    status: int,
    payload: bytes,
    *,
    close: bool = False,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if close:
        # The body was not read, so the stream is no longer at a request boundary.
        head.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": payload})


async def _fail(
    send: Send,
    status: int,
    message: str,
    *,
    close: bool = False,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    payload = orjson.dumps({"error": message, "status": status})
    await _send(send, status, payload, close=close, headers=headers)


class JsonHttpServer:
    """Serves `routes` (POST, JSON) plus GET /healthz on a background thread; over TLS with a
    ServingCertificate, whose files are watched while the server runs, answering only the clients
    its `client_auth` admits when it has one (clientauth.py).

    `reuse_port`: other processes may serve the same port (`--webhook-workers`)."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ServingCertificate | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        keep_alive: int = DEFAULT_KEEP_ALIVE,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        threads: int = DEFAULT_THREADS,
        graceful_shutdown: int = DEFAULT_GRACEFUL_SHUTDOWN,
        reuse_port: bool = False,
        name: str = "gpupaas-http",
        inline: bool = False,
        max_wait: float = DEFAULT_MAX_WAIT,
        listen_option: str = "--listen",
    ) -> None:
        """`inline`: run the routes on the event loop (only for routes that never wait on I/O).
        `listen_option`: the command-line option that gave host and port, named when they
        cannot be bound."""
        self.certificate = ssl_context
        self.app = JsonApp(
            routes,
            max_body=max_body,
            max_pending=max_pending,
            threads=threads,
            name=name,
            inline=inline,
            max_wait=max_wait,
        )
        self._socket = listening_socket(host, port, reuse_port=reuse_port, option=listen_option)
        certificate = self.certificate
        config = uvicorn.Config(
            self.app,
            host=host,
            port=self.port,
            http=protocol_class(
                Deadlines(header=header_timeout, body=body_timeout),
                certificate.client_auth if certificate is not None else None,
            ),
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            limit_concurrency=2 * max_connections,  # a backstop: the accept gate keeps the budget
            timeout_keep_alive=keep_alive,
            timeout_graceful_shutdown=graceful_shutdown,
            ssl_context_factory=(lambda *_: switching_context(certificate)) if certificate else None,
        )
        self._server = uvicorn.Server(config)
        self._loop_factory = loop_factory(header_timeout, max_connections)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=self._loop_factory) as runner:
                runner.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # reported by start(); a thread's exception is otherwise lost
            self._error = exc

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        return bound_url(self._socket, tls=self.certificate is not None)

    @property
    def gate(self) -> GatedServer:
        """The accept gate keeping the connection budget (once started)."""
        return cast("GatedServer", self._server.servers[0])

    def open_sockets(self) -> list[Any]:
        """The sockets of the connections open now (to check their options)."""
        connections = list(self._server.server_state.connections)
        return [c.transport.get_extra_info("socket") for c in connections if c.transport is not None]

    def start(self, timeout: float = 10.0) -> None:
        if self.certificate is not None:
            self.certificate.start()
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the HTTP server did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server did not start within {timeout} s")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop accepting, end idle keep-alive connections, let requests being decided finish
        (for at most `graceful_shutdown` seconds)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=(self._server.config.timeout_graceful_shutdown or 0) + 10)
        with contextlib.suppress(OSError):
            self._socket.close()
        self.app.pool.shutdown(wait=False, cancel_futures=True)
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

    @property
    def gate(self) -> GatedServer:
        """The accept gate keeping the connection budget (once started)."""
        return self._http.gate

    def start(self) -> Self:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""The ASGI app of the JSON front: POST routes plus GET /healthz, the body limit, overload refused
before anything is read, the routes run on threads or inline (jsonhttp/)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import orjson

from pdp.net.jsonhttp.routes import Route, call_route, parse_query
from pdp.net.serving.protocol import ARRIVED, CALLER, QUEUED

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

DEFAULT_MAX_BODY = 3 * 1024 * 1024
DEFAULT_MAX_PENDING = 256
DEFAULT_MAX_WAIT = 1.0
DEFAULT_THREADS = 8
# A body above the limit but within this factor of it is left for the parser to read and drop, so
# the connection stays usable; a larger one closes the connection after the 413.
_DRAIN_FACTOR = 4


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
            query = parse_query(bytes(scope["query_string"]).decode("latin-1"))
            args = (route, body, query, arrived, scope.get(CALLER), scope["path"])
            if self.inline:
                status, payload = call_route(*args)
            else:
                status, payload = await asyncio.get_running_loop().run_in_executor(
                    self.pool, call_route, *args
                )
        finally:
            self.pending -= 1
        await _send(send, status, payload)


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

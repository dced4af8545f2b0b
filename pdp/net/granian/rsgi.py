"""The JSON front's app (jsonhttp/JsonApp: its routes, limits and threads) over RSGI, Granian's
interface: the same checks and answers as over ASGI, without ASGI's messages (granian/)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import orjson

from pdp.net.jsonhttp.app import JsonApp
from pdp.net.jsonhttp.routes import Route, call_route, parse_query

_JSON = ("content-type", "application/json")
_RETRY = ("retry-after", "1")


def _error(status: int, message: str) -> bytes:
    return orjson.dumps({"error": message, "status": status})


class RsgiJsonApp:
    """JsonApp's routes over RSGI. `lag`: how late the event loop runs what is ready now (Granian
    hands each request to the loop as it is parsed and cannot say when it arrived; the lag is the
    time it waited). `caller`: who called, as the TLS handshake established it."""

    def __init__(
        self, app: JsonApp, *, body_timeout: float, lag: Callable[[], float], caller: str | None
    ) -> None:
        self.app = app
        self.body_timeout = body_timeout
        self.lag = lag
        self.caller = caller
        self.http_versions: Counter[str] = Counter()
        """Requests served by HTTP version ("1.1", "2"): what the clients negotiated."""

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto != "http":
            return
        lag = self.lag()
        # The API server's timeout runs from the request's arrival: the loop's lag counts as waited.
        arrived = time.monotonic() - lag
        self.http_versions[scope.http_version] += 1
        path, method = scope.path, scope.method
        route = self.app.routes.get(path)
        if method == "POST" and route is not None:
            await self._post(route, scope, protocol, arrived, lag)
        elif method == "GET" and path == "/healthz":
            protocol.response_bytes(HTTPStatus.OK, [_JSON], b'{"status":"ok"}')
        elif route is not None or path == "/healthz":
            msg = f"{method} is not allowed on {path}"
            protocol.response_bytes(HTTPStatus.METHOD_NOT_ALLOWED, [_JSON], _error(405, msg))
        else:
            protocol.response_bytes(HTTPStatus.NOT_FOUND, [_JSON], _error(404, f"no route {path}"))

    def refusal(self, length: str | None, chunked: bool, waited: float) -> tuple[int, str] | None:
        """The status and reason a POST is refused with before its body is read; None to decide it.
        (hyper reads and drops, or closes, an unread body itself.)"""
        app = self.app
        if length is None or chunked:
            return HTTPStatus.LENGTH_REQUIRED, "Content-Length is required"
        if not length.isdigit():
            return HTTPStatus.BAD_REQUEST, f"Content-Length {length!r} is not a length"
        if int(length) > app.max_body:
            return (
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {int(length)} bytes is above the limit of {app.max_body}",
            )
        if app.pending >= app.max_pending or waited > app.max_wait:
            # Refused before the body is read or anything is decided; the API server fails the
            # call, and with failurePolicy Fail that is a rejection, never an admission.
            app.refused += 1
            if waited > app.max_wait:
                why = f"the request waited {waited:.2f} s for the server"
            else:
                why = f"{app.pending} requests are being decided"
            return HTTPStatus.SERVICE_UNAVAILABLE, f"overloaded: {why}; retry"
        return None

    async def _post(self, route: Route, scope: Any, protocol: Any, arrived: float, lag: float) -> None:
        headers = scope.headers
        refused = self.refusal(
            headers.get("content-length"), headers.get("transfer-encoding") is not None, lag
        )
        if refused is not None:
            status, msg = refused
            extra = [_JSON, _RETRY] if status == HTTPStatus.SERVICE_UNAVAILABLE else [_JSON]
            protocol.response_bytes(status, extra, _error(status, msg))
            return
        app = self.app
        app.pending += 1
        try:
            try:
                async with asyncio.timeout(self.body_timeout):
                    body = await protocol()
            except (TimeoutError, ConnectionError, RuntimeError):
                return  # a client that stopped sending, or went away
            if len(body) != int(headers.get("content-length")):
                return
            query = parse_query(scope.query_string)
            args = (route, body, query, arrived, self.caller, scope.path)
            if app.inline:
                status, payload = call_route(*args)
            else:
                loop = asyncio.get_running_loop()
                status, payload = await loop.run_in_executor(app.pool, call_route, *args)
        finally:
            app.pending -= 1
        protocol.response_bytes(status, [_JSON], payload)

"""The HTTP/JSON front of the PDP: `POST /v1/decide` and `POST /v1/decide/batch`, for callers that
cannot speak gRPC (Slurm's job_submit.lua, shell, Ansible).

The routes are thin: the body is the intent document of docs/decision-contract.md, the answer is
`Decision.to_dict()`, and both go through `DecisionPoint.decide`, so deadlines and fail-closed
answers are those of every other entry point. A malformed intent is 400 naming the field; an
engine failure is a 200 DENY with its ENGINE_* reason, never an error status a caller could
mistake for "no answer, go ahead".

Deadline: `?timeout=` or the `Request-Timeout` header (a Go duration such as `250ms`, or seconds),
capped by the server's default; the clock starts when the request reaches the route, so time
spent queueing for a worker thread counts against it.

Who asks: the bearer token's principal (pdp/api/auth.py), 401 without a valid token when the
server has a token file, 403 for a tenant asking about another tenant, before anything is decided.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from pdp.api.auth import Forbidden, Unauthenticated, authenticate, authorize
from pdp.api.token_file import BearerTokens, Principal
from pdp.intents import InvalidIntent
from pdp.net.durations import parse_go_duration
from pdp.net.metrics_http import metrics_response
from pdp.point import DecideOptions, DecisionPoint

DEFAULT_MAX_BODY = 3 * 1024 * 1024
TIMEOUT_HEADER = "Request-Timeout"


class HttpProblem(Exception):
    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        self.status = status
        self.message = message
        self.field = field
        super().__init__(message)


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json", headers=headers)


def _problem(exc: HttpProblem) -> Response:
    doc: dict[str, Any] = {"error": exc.message, "status": exc.status}
    if exc.field is not None:
        doc["field"] = exc.field
    headers = {"WWW-Authenticate": 'Bearer realm="gpupaas-pdp"'} if exc.status == 401 else None
    return _json(doc, exc.status, headers)


def requested_timeout(request: Request) -> float | None:
    """Seconds the caller gives the decision, from `?timeout=` or the Request-Timeout header."""
    candidates = (
        ("timeout", request.query_params.get("timeout")),
        (TIMEOUT_HEADER, request.headers.get(TIMEOUT_HEADER)),
    )
    for source, text in candidates:
        if text is None:
            continue
        seconds = float(text) if _is_number(text) else parse_go_duration(text)
        if seconds is None or not 0 < seconds < float("inf"):
            raise HttpProblem(
                400, f"{source} {text!r} is not a positive duration (e.g. 250ms, 1s, 0.5)", field=source
            )
        return seconds
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class DecisionApi:
    """The routes, bound to one decision point."""

    def __init__(
        self,
        point: DecisionPoint,
        *,
        tokens: BearerTokens | None = None,
        default_timeout: float = 1.0,
        max_body: int = DEFAULT_MAX_BODY,
        engine_ready: Callable[[], bool] = lambda: True,
    ) -> None:
        self.point = point
        self.tokens = tokens
        self.default_timeout = default_timeout
        self.max_body = max_body
        self.engine_ready = engine_ready

    def _options(self, request: Request, arrived: float, principal: Principal) -> DecideOptions:
        asked = requested_timeout(request)
        timeout = self.default_timeout if asked is None else min(asked, self.default_timeout)
        return DecideOptions(deadline=arrived + timeout, entry_point="http", principal=str(principal))

    def _authenticate(self, request: Request) -> Principal:
        try:
            return authenticate(self.tokens, request.headers.get("Authorization"))
        except Unauthenticated as exc:
            raise HttpProblem(401, str(exc)) from None

    @staticmethod
    def _authorize(principal: Principal, intents: list[Any]) -> None:
        try:
            authorize(principal, intents)
        except Forbidden as exc:
            raise HttpProblem(403, str(exc)) from None

    async def _body(self, request: Request) -> Any:
        declared = request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise HttpProblem(413, f"body of {declared} bytes is above the limit of {self.max_body}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise HttpProblem(413, f"body is above the limit of {self.max_body} bytes")
            chunks.append(chunk)
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as exc:
            raise HttpProblem(400, f"body is not JSON: {exc}") from exc

    def _guarded(
        self, handler: Callable[[Request, float, Principal], Awaitable[Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def route(request: Request) -> Response:
            arrived = time.monotonic()
            try:
                principal = self._authenticate(request)
                return _json(await handler(request, arrived, principal))
            except HttpProblem as exc:
                return _problem(exc)
            except InvalidIntent as exc:
                return _problem(HttpProblem(400, str(exc), field=exc.field))
            except ClientDisconnect:
                # Gone before its body was whole (it left, timed out or was evicted): nobody reads
                # an answer, and it is not a fault of the server to log as one.
                return _problem(HttpProblem(400, "the connection closed before the body was whole"))

        return route

    async def decide(self, request: Request, arrived: float, principal: Principal) -> Any:
        options = self._options(request, arrived, principal)
        intent = await self._body(request)
        self._authorize(principal, [intent])
        decision = await run_in_threadpool(self.point.decide, intent, options)
        return decision.to_dict()

    async def decide_batch(self, request: Request, arrived: float, principal: Principal) -> Any:
        options = self._options(request, arrived, principal)
        body = await self._body(request)
        if not isinstance(body, dict) or not isinstance(body.get("intents"), list):
            raise InvalidIntent("intents", 'is required: the body is {"intents": [<intent>, ...]}')
        self._authorize(principal, body["intents"])
        decisions = await run_in_threadpool(self.point.decide_batch, body["intents"], options)
        return {"decisions": [d.to_dict() for d in decisions]}

    async def healthz(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        ready = await run_in_threadpool(self.engine_ready)
        return _json({"ready": ready}, 200 if ready else 503)

    async def metrics(self, request: Request) -> Response:
        """Prometheus metrics of this process; behind the same bearer tokens as the decisions."""
        try:
            self._authenticate(request)
        except HttpProblem as exc:
            return _problem(exc)
        return metrics_response()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/decide", self._guarded(self.decide), methods=["POST"]),
                Route("/v1/decide/batch", self._guarded(self.decide_batch), methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/readyz", self.readyz, methods=["GET"]),
                Route("/metrics", self.metrics, methods=["GET"]),
            ]
        )

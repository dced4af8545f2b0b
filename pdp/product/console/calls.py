"""The console acts through the product API's own route functions, called in process: the same
checks (ownership, state, the PDP's DENY), the same workflows and answers, no second code path."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.responses import Response


class Refused(Exception):
    """The API refused: its status and detail (a sentence, or a decision with reasons)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def endpoint(api: FastAPI, method: str, path: str) -> Callable[..., Any]:
    # The API's routes live in included routers, which FastAPI keeps as one entry each in
    # `api.routes`; iter_route_contexts walks into them (the walk the OpenAPI schema uses).
    for context in iter_route_contexts(api.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and context.path == path and method in (route.methods or ()):
            return route.endpoint
    raise LookupError(f"the product API has no {method} {path}")


def call(api: FastAPI, method: str, path: str, **arguments: Any) -> Any:
    """The route's JSON answer; Refused for what the API answers with an error."""
    try:
        result = endpoint(api, method, path)(**arguments)
    except HTTPException as exc:
        raise Refused(exc.status_code, exc.detail) from exc
    if isinstance(result, Response):
        return json.loads(bytes(result.body))
    return result

"""The product API's answers to a malformed request: each field named, the problem in words
(`target_replicas is required`), rather than FastAPI's default list of locations and types."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pdp.product.api.error_text import describe_error
from pdp.schemas.errors import format_path, sentence


def field(loc: Sequence[Any]) -> str:
    """`("body", "deployment", "replicas")` -> `deployment.replicas`."""
    parts = [p for p in loc if p != "body"] or ["body"]
    return format_path([p if isinstance(p, int) else str(p) for p in parts])


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 with `detail` (every problem, one sentence each), `problems` (the list) and `errors`
    (each as {loc, msg, type[, input]}, JSON-safe and short: pdp/product/api/error_text.py)."""
    assert isinstance(exc, RequestValidationError)
    content_type = request.headers.get("content-type")
    errors = [describe_error(dict(e), content_type) for e in exc.errors()]
    problems = []
    for error in errors:
        problem = "is required" if error["type"] == "missing" else str(error["msg"])
        problems.append(sentence(field(error["loc"]), problem[:1].lower() + problem[1:]))
    body = {"detail": "; ".join(problems), "problems": problems, "errors": errors}
    return JSONResponse(body, status_code=422)

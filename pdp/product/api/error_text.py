"""Request validation errors of the product API made safe to answer (pdp/product/api/errors.py
turns them into sentences): never a 500 for the shape of what a client sent.

FastAPI's own handler echoes each refused value as text. A body sent without a JSON content type
is not parsed, so the refused value is the raw bytes, and bytes that are not UTF-8 made that echo
raise (a 500 on every route with a body). Here the body is named as not JSON, and every echoed
value is made JSON-safe and short.
"""

from __future__ import annotations

import json
from typing import Any

from pdp.schemas.errors import echo, shorten


def _safe(value: Any) -> Any:
    """A JSON value for `value`, at most a few hundred characters long."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return shorten(value)
    if isinstance(value, bytes | bytearray):
        return echo(bytes(value))
    text = json.dumps(value, default=repr, ensure_ascii=False)
    return value if len(text) <= 200 else shorten(text, 200)


def describe_error(error: dict[str, Any], content_type: str | None) -> dict[str, Any]:
    """One pydantic/FastAPI error as {loc, msg, type[, input, ctx]}, safe to serialize."""
    value = error.get("input")
    if tuple(error.get("loc", ())) == ("body",) and isinstance(value, bytes | bytearray):
        got = f"Content-Type {shorten(content_type)}" if content_type else "no Content-Type"
        return {
            "loc": ["body"],
            "type": "body_not_json",
            "msg": f"the body must be JSON sent with Content-Type: application/json; got {got} "
            f"and {len(value)} bytes that were not read as JSON",
        }
    out: dict[str, Any] = {
        "loc": [shorten(p) if isinstance(p, str) else p for p in error.get("loc", ())],
        "msg": shorten(str(error.get("msg", "")), 500),
        "type": str(error.get("type", "")),
    }
    if "input" in error:
        out["input"] = _safe(value)
    ctx = error.get("ctx")
    if isinstance(ctx, dict):
        # ctx may hold exception objects (a validator's error): their text is what a client needs.
        out["ctx"] = {
            str(k): _safe(v if isinstance(v, str | int | float) else str(v)) for k, v in ctx.items()
        }
    return out

"""What a route of the JSON front is, and how its answer (or failure) becomes a status and a
JSON body (jsonhttp/)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import orjson

# Named as before the split into a package: the name operators filter on.
log = logging.getLogger("pdp.net.jsonhttp")

Query = Mapping[str, list[str]]
Route = Callable[[bytes, Query, float, str | None], Any]
"""A POST route: the body, the query string, the request's arrival (time.monotonic()) and who
called as its client certificate says (`substrate:NAME`; None without client authentication) in,
a JSON document out (status 200), or `bytes` already holding its JSON text; raises HttpError for
another status."""

_TOO_DEEP = "the body is nested too deeply to be read (arrays and objects more than ~1,000 levels deep)"


def parse_query(text: str) -> Query:
    """`parse_qs(text)`. The API server's `timeout=10s` (fields without `%` or `+`: nothing to
    unquote) is split here directly, a sixth of parse_qs's cost, on every review; the rest goes to
    parse_qs. Like it, fields without `=` or with an empty value are left out."""
    if not text:
        return {}
    if "%" in text or "+" in text:
        return parse_qs(text)
    query: dict[str, list[str]] = {}
    for field in text.split("&"):
        name, eq, value = field.partition("=")
        if eq and value:
            query.setdefault(name, []).append(value)
    return query


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(message)


def call_route(
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

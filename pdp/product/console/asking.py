"""Asking the PDP before submitting, then submitting through the API: what every request form does.

A preview decides the intent the API's check builds (`queries.decide`,
pdp/lifecycle/services/queries.py) with the usage of that moment; it records nothing and starts
nothing. A submission calls the API's route function, which decides again and starts the request's
workflow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pdp.intents import InvalidIntent
from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.services import queries
from pdp.product.console.calls import Refused
from pdp.product.console.common import detail_text
from pdp.schemas.errors import sentence


def preview(
    who: Principal, tenant: str, kind: str, payload: dict[str, Any], with_usage: bool = True
) -> dict[str, Any]:
    """The decision the API's check would make now (InvalidIntent for a malformed one)."""
    intent: dict[str, Any] = {
        "kind": kind,
        "tenant": tenant,
        "actor": who.actor,
        kind: {k: v for k, v in payload.items() if v is not None},
    }
    if with_usage:  # as the API's check: every request but offboarding is decided with the usage
        intent["usage"] = queries.usage(tenant)
    return queries.decide(intent)


def act(
    who: Principal, action: str, kind: str, tenant: str, payload: dict[str, Any],
    submit: Callable[[], Any], with_usage: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """preview/submit -> the page's `preview`, `result` and `problem`."""
    out: dict[str, Any] = {"preview": None, "result": None, "problem": ""}
    try:
        out["preview"] = preview(who, tenant, kind, payload, with_usage)
    except InvalidIntent as exc:
        out["problem"] = sentence(exc.field, exc.problem)
        return out
    if action != "submit":
        return out
    try:
        out["result"] = submit()
        out["preview"] = None
    except Refused as exc:
        if isinstance(exc.detail, dict) and exc.detail.get("outcome"):
            out["preview"], out["problem"] = None, f"Refused: {detail_text(exc.detail)}"
            out["result"] = {"status": exc.detail.get("status", "denied"), **exc.detail}
        else:
            out["problem"] = f"Refused ({exc.status}): {detail_text(exc.detail)}"
    return out

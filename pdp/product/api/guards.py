"""What every product API route checks first: that the caller may see the tenant (else 404, so
another tenant's existence is not disclosed), and the PDP's answer to the request's intent (a
malformed intent is 422, a DENY 403 with its reasons; nothing has started either way)."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from pdp.intents import InvalidIntent
from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import queries
from pdp.lifecycle.storage.store import NotFound
from pdp.schemas.errors import sentence


def own_tenant(caller: Principal, tenant: str) -> dict[str, Any]:
    """The tenant record, or 404 for a tenant the caller may not see."""
    if not caller.may_act_on(tenant):
        raise HTTPException(404, f"tenant {tenant!r} not found")
    try:
        return current().store.tenant(tenant)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


def deployment_named(tenant: str, name: str) -> dict[str, Any]:
    """The tenant's deployment called `name`, or 404."""
    for dep in queries.deployments(tenant):
        if dep["name"] == name:
            return dep
    raise HTTPException(404, f"deployment {name!r} not found")


def decide_or_refuse(intent: dict[str, Any]) -> dict[str, Any]:
    """The API's own check: a malformed intent is 422, a DENY 403 (nothing started). What it
    allows is decided again by the workflow, against the usage when the change is applied."""
    try:
        decision = current().policy.decide(intent)
    except InvalidIntent as exc:
        raise HTTPException(422, sentence(exc.field, exc.problem)) from exc
    if decision["outcome"] == "DENY":
        raise HTTPException(
            403,
            {
                "outcome": "DENY",
                "reasons": decision["reasons"],
                "reason_codes": [r["code"] for r in decision["reasons"]],
                "decision_id": decision["decision_id"],
                "bundle_revision": decision["bundle_revision"],
            },
        )
    return decision


def active_tenant(caller: Principal, tenant: str) -> dict[str, Any]:
    """The tenant record if the caller may see it and it is active; 409 otherwise."""
    record = own_tenant(caller, tenant)
    if record["state"] != "active":
        raise HTTPException(409, f"tenant {tenant!r} is {record['state']}, not active")
    return record

"""Decision records of the product API: a tenant's decisions, from every PDP replica when the
records are central (`--records-url postgresql://...`, docs/multi-cluster.md).

A tenant token sees its own tenant's records only (another tenant is 404, as everywhere in the
API); the admin sees any tenant's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from pdp.lifecycle.runtime import current
from pdp.product.auth import Caller

router = APIRouter(tags=["decisions"])


def _moment(name: str, text: str | None) -> datetime | None:
    """An ISO 8601 time with zone; text, so a number (which pydantic reads as epoch seconds) is
    refused like any other non-time."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise HTTPException(422, f"{name}: {text!r} is not an ISO 8601 time") from exc
    if moment.tzinfo is None:
        raise HTTPException(422, f"{name}: {text} has no time zone (add Z or +00:00)")
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError) as exc:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise HTTPException(422, f"{name}: {text} is out of range in UTC") from exc


@router.get("/v1/tenants/{tenant}/decisions")
def tenant_decisions(
    tenant: str,
    caller: Caller,
    since: Annotated[str | None, Query(description="ISO 8601 time with zone, inclusive")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 time with zone, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The tenant's decision records, oldest first, each naming the PDP process (writer) that
    decided when the records are central."""
    if not caller.may_act_on(tenant):
        raise HTTPException(404, f"tenant {tenant!r} not found")
    log = current().policy.stack.decision_log
    if log is None:
        raise HTTPException(404, "this worker keeps no decision records")
    window = {"since": _moment("since", since), "until": _moment("until", until)}
    found = log.query(tenant=tenant, limit=limit, **window)
    return [r.to_dict() for r in found]

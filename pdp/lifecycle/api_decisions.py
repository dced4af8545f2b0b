"""Decision records of the product API: a tenant's decisions, from every PDP replica when the
records are central (`--records-url postgresql://...`, docs/multi-cluster.md).

A tenant token sees its own tenant's records only (another tenant is 404, as everywhere in the
API); the admin sees any tenant's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from pdp.lifecycle.auth import Caller
from pdp.lifecycle.runtime import current

router = APIRouter(tags=["decisions"])


def _aware(name: str, moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        raise HTTPException(422, f"{name}: {moment.isoformat()} has no time zone (add Z or +00:00)")
    return moment


@router.get("/v1/tenants/{tenant}/decisions")
def tenant_decisions(
    tenant: str,
    caller: Caller,
    since: Annotated[datetime | None, Query(description="ISO 8601 with zone, inclusive")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601 with zone, exclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The tenant's decision records, oldest first, each naming the PDP process (writer) that
    decided when the records are central."""
    if not caller.may_act_on(tenant):
        raise HTTPException(404, f"tenant {tenant!r} not found")
    log = current().policy.stack.decision_log
    if log is None:
        raise HTTPException(404, "this worker keeps no decision records")
    found = log.query(tenant=tenant, since=_aware("since", since), until=_aware("until", until), limit=limit)
    return [r.to_dict() for r in found]

"""The decision explorer over the PDP's decision log (pdp/records/search.py): every decision the
PDP made for the lifecycle, whatever asked it, by decision id, tenant, outcome, reason code and
time. The admin searches every tenant's (`/admin/decisions`); a tenant, and the admin looking at
one tenant, searches that tenant's only (`/tenants/{tenant}/decisions`, 404 for another's)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from starlette.responses import Response

from pdp.lifecycle.services import queries
from pdp.product.console.common import own_tenant, require_admin
from pdp.product.console.render import page
from pdp.product.console.session import Viewer
from pdp.records.search import OUTCOMES, Search, search

SHOWN = 200


def _moment(name: str, text: str) -> datetime | None:
    """An ISO 8601 time or a prefix of one (2026-12-02, 2026-12-02T15); UTC unless it names a zone."""
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise HTTPException(422, f"{name}: {text!r} is not an ISO 8601 time (e.g. 2026-12-02T15:00)") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _explore(request: Request, who: Any, tenant: str | None, query: dict[str, str]) -> Response:
    outcome = query["outcome"].strip().upper() or None
    if outcome is not None and outcome not in OUTCOMES:
        raise HTTPException(422, f"outcome: {outcome!r} is not one of {', '.join(OUTCOMES)}")
    wanted = Search(
        decision_id=query["decision_id"].strip() or None,
        tenant=tenant,
        outcome=outcome,
        reason=query["reason"].strip().upper() or None,
        since=_moment("since", query["since"]),
        until=_moment("until", query["until"]),
        limit=SHOWN,
    )
    log = queries.pdp().decision_log
    if log is None:
        raise HTTPException(404, "this worker keeps no decision records")
    found = [r.to_dict() for r in search(log, wanted)]
    return page(
        request, "decisions.html", who, title="Decisions", found=found, query=query, outcomes=OUTCOMES,
        scope=tenant, shown=SHOWN, location=log.location,
    )  # fmt: skip


def router(api: FastAPI) -> APIRouter:
    r = APIRouter()

    @r.get("/admin/decisions")
    def explorer(
        request: Request, who: Viewer, decision_id: str = "", tenant: str = "", outcome: str = "",
        reason: str = "", since: str = "", until: str = "",
    ) -> Response:  # fmt: skip
        require_admin(who)
        query = {"decision_id": decision_id, "tenant": tenant, "outcome": outcome, "reason": reason,
                 "since": since, "until": until}  # fmt: skip
        return _explore(request, who, tenant.strip() or None, query)

    @r.get("/tenants/{tenant}/decisions")
    def tenant_explorer(
        request: Request, tenant: str, who: Viewer, decision_id: str = "", outcome: str = "",
        reason: str = "", since: str = "", until: str = "",
    ) -> Response:  # fmt: skip
        own_tenant(api, who, tenant)  # 404 for another tenant's
        query = {"decision_id": decision_id, "tenant": tenant, "outcome": outcome, "reason": reason,
                 "since": since, "until": until}  # fmt: skip
        return _explore(request, who, tenant, query)

    return r

"""Admin pages: the approvals queue (answered through the API's own route), tenants and their
state, the audit trail's verification, and a decision explorer over the audit trail's records.
Every page here is 403 for a tenant's session."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, HTTPException, Request
from starlette.responses import RedirectResponse, Response

from pdp.console import session
from pdp.console.calls import Refused, call
from pdp.console.render import page
from pdp.console.session import PREFIX, Viewer
from pdp.console.views_common import decisions, detail_text, require_admin
from pdp.lifecycle import audit
from pdp.lifecycle.runtime import current
from pdp.lifecycle.states import TENANT

OUTCOMES = ("ALLOW", "DENY", "NEEDS_APPROVAL")
EXPLORER_LIMIT = 200
AUDIT_RECENT = 25


def _codes(record: dict[str, Any]) -> set[str]:
    return {str(r.get("code")) for r in record.get("detail", {}).get("reasons", [])}


def router(api: FastAPI) -> APIRouter:
    r = APIRouter()

    @r.get("/admin/approvals")
    def approvals(request: Request, who: Viewer, notice: str = "") -> Response:
        require_admin(who)
        queue = call(api, "GET", "/v1/approvals", caller=who, all=False)
        return page(request, "approvals.html", who, title="Approvals", queue=queue, notice=notice)

    @r.post("/admin/approvals/{approval_id}", dependencies=[session.CsrfChecked])
    def answer(
        request: Request,
        approval_id: str,
        who: Viewer,
        verdict: Annotated[str, Form()],
        comment: Annotated[str, Form()] = "",
    ) -> Response:
        from pdp.lifecycle.api import ApprovalAnswer  # the API's own body model

        require_admin(who)
        if verdict not in ("approve", "reject"):
            raise HTTPException(422, "verdict: must be approve or reject")
        body = ApprovalAnswer(approved=verdict == "approve", comment=comment)
        try:
            path = "/v1/approvals/{approval_id}"
            sent = call(api, "POST", path, approval_id=approval_id, body=body, caller=who)
        except Refused as exc:
            raise HTTPException(exc.status, detail_text(exc.detail)) from exc
        notice = f"{approval_id}: {sent['sent']}"
        return RedirectResponse(f"{PREFIX}/admin/approvals?notice={notice}", status_code=303)

    @r.get("/admin/tenants")
    def tenants(request: Request, who: Viewer) -> Response:
        require_admin(who)
        rows = call(api, "GET", "/v1/tenants", caller=who)
        # The tenant state machine as a table: each state, who is in it, where it may go next.
        states = [
            {
                "state": state,
                "initial": state == TENANT.initial,
                "tenants": [t["name"] for t in rows if t["state"] == state],
                "next": sorted(TENANT.transitions[state]),
            }
            for state in TENANT.transitions
        ]
        return page(request, "tenants.html", who, title="Tenants", tenants=rows, states=states)

    @r.get("/admin/capacity")
    def capacity(request: Request, who: Viewer) -> Response:
        require_admin(who)
        view = call(api, "GET", "/v1/capacity", caller=who)
        bundle = current().policy.stack.bundle_status()
        return page(request, "capacity.html", who, title="Capacity", view=view, bundle=bundle)

    @r.get("/admin/audit")
    def audit_page(request: Request, who: Viewer) -> Response:
        require_admin(who)
        report = call(api, "GET", "/v1/audit/verify", caller=who)
        recent = list(reversed(list(audit.records(current().db))))[:AUDIT_RECENT]
        return page(request, "audit.html", who, title="Audit trail", report=report, recent=recent)

    @r.get("/admin/decisions")
    def explorer(
        request: Request,
        who: Viewer,
        decision_id: str = "",
        tenant: str = "",
        outcome: str = "",
        reason: str = "",
        since: str = "",
        until: str = "",
    ) -> Response:
        """By decision id, tenant, outcome, reason code, and time (`since`/`until`: ISO 8601 UTC
        prefixes such as 2026-12-02T15, compared as the records' own UTC timestamps)."""
        require_admin(who)
        found: list[dict[str, Any]] = decisions(tenant.strip() or None)
        if decision_id:
            found = [d for d in found if d.get("decision_id") == decision_id.strip()]
        if outcome:
            found = [d for d in found if d.get("detail", {}).get("outcome") == outcome]
        if reason:
            code = reason.strip().upper()
            found = [d for d in found if code in _codes(d)]
        if since:
            found = [d for d in found if str(d.get("at", "")) >= since.strip()]
        if until:
            found = [d for d in found if str(d.get("at", ""))[: len(until.strip())] <= until.strip()]
        query = {
            "decision_id": decision_id, "tenant": tenant, "outcome": outcome, "reason": reason,
            "since": since, "until": until,
        }  # fmt: skip
        return page(
            request, "decisions.html", who, title="Decisions", found=found[:EXPLORER_LIMIT], query=query,
            outcomes=OUTCOMES, total=len(found),
        )  # fmt: skip

    return r

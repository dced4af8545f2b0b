"""Admin pages: the approvals queue (answered through the API's own route), tenants and their
state, capacity, the policy bundle's revisions, and the audit trail's verification (the decision
explorer is pdp/product/console/pages/decisions.py). Every page here is 403 for a tenant's session."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, HTTPException, Request
from starlette.responses import RedirectResponse, Response

from pdp.lifecycle.services import queries
from pdp.lifecycle.states import TENANT
from pdp.product.console import session
from pdp.product.console.calls import Refused, call
from pdp.product.console.common import detail_text, require_admin
from pdp.product.console.render import page
from pdp.product.console.session import PREFIX, Viewer

AUDIT_RECENT = 25


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
        from pdp.product.api.models import ApprovalAnswer  # the API's own body model

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
        bundle = queries.pdp().bundle_status()
        return page(request, "capacity.html", who, title="Capacity", view=view, bundle=bundle)

    @r.get("/admin/audit")
    def audit_page(request: Request, who: Viewer) -> Response:
        require_admin(who)
        report = call(api, "GET", "/v1/audit/verify", caller=who)
        recent = list(reversed(queries.audit_records()))[:AUDIT_RECENT]
        return page(request, "audit.html", who, title="Audit trail", report=report, recent=recent)

    @r.get("/admin/bundles")
    def bundles(request: Request, who: Viewer) -> Response:
        """The revision the PDP decides on now and every revision it activated before."""
        require_admin(who)
        stack = queries.pdp()
        status = stack.bundle_status()
        history = stack.history
        entries = list(reversed(history.entries()))
        active = str(status.get("active_revision") or (entries[0]["revision"] if entries else ""))
        return page(
            request, "bundles.html", who, title="Policy bundles", active=active, status=status,
            entries=entries, check=history.verify(), engine=stack.settings.engine,
        )  # fmt: skip

    return r

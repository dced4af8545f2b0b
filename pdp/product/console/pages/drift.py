"""Drift: the last audit of what runs on the clusters against the policy — `GET /v1/drift`'s
answer, asked through the API's own route, so a tenant sees its own workloads' findings only (the
other tenants' names masked) and the admin every finding and cluster."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from pdp.lifecycle.bearer_tokens import Principal
from pdp.product.console.calls import call
from pdp.product.console.common import own_tenant, require_admin
from pdp.product.console.render import page
from pdp.product.console.session import Viewer


def _drift(request: Request, api: FastAPI, who: Principal, tenant: str | None) -> Response:
    report: dict[str, Any] = call(api, "GET", "/v1/drift", caller=who)
    return page(
        request, "drift.html", who, title="Drift" + (f" of {tenant}" if tenant else ""), tenant=tenant,
        report=report,
    )  # fmt: skip


def router(api: FastAPI) -> APIRouter:
    r = APIRouter()

    @r.get("/admin/drift")
    def all_drift(request: Request, who: Viewer) -> Response:
        require_admin(who)
        return _drift(request, api, who, None)

    @r.get("/tenants/{tenant}/drift")
    def tenant_drift(request: Request, tenant: str, who: Viewer) -> Response:
        own_tenant(api, who, tenant)  # 404 for another tenant's
        if who.is_admin:  # the admin looking at one tenant: that tenant's findings only
            report: dict[str, Any] = call(api, "GET", "/v1/drift", caller=who)
            mine = [f for f in report.get("findings", []) if f.get("tenant") == tenant]
            return page(
                request, "drift.html", who, title=f"Drift of {tenant}", tenant=tenant,
                report={"finished_at": report.get("finished_at"), "revision": report.get("revision"),
                        "findings": mine},
            )  # fmt: skip
        return _drift(request, api, who, tenant)

    return r

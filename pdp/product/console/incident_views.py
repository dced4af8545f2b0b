"""Incidents: per faulty node, the fault, the cordon, the deployments re-placed and how it was
resolved. The admin's page is `GET /v1/incidents` (admin only in the API, asked through its own
route); a tenant's page holds the incident records of its own audit trail (`incident.*`: the
notices and SLA impact the incident workflow wrote for it), 404 for another tenant's."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from pdp.lifecycle.services import queries
from pdp.product.console.calls import call
from pdp.product.console.render import page
from pdp.product.console.session import Viewer
from pdp.product.console.views_common import own_tenant, require_admin


def router(api: FastAPI) -> APIRouter:
    r = APIRouter()

    @r.get("/admin/incidents")
    def all_incidents(request: Request, who: Viewer) -> Response:
        require_admin(who)
        found = call(api, "GET", "/v1/incidents", caller=who, open_only=False)
        return page(request, "incidents.html", who, title="Incidents", incidents=found, records=None)

    @r.get("/tenants/{tenant}/incidents")
    def tenant_incidents(request: Request, tenant: str, who: Viewer) -> Response:
        own_tenant(api, who, tenant)  # 404 for another tenant's
        records = [
            r for r in queries.audit_records(tenant) if str(r.get("event", "")).startswith("incident.")
        ]
        return page(
            request, "incidents.html", who, title=f"Incidents of {tenant}", incidents=None,
            records=list(reversed(records)), tenant=tenant,
        )  # fmt: skip

    return r

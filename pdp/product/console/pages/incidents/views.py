"""Incidents: a timeline per node (timeline.py) of what the incident workflow did, from its audit
records: the fault, the cordon, the re-placements by tier, the resolution. The admin's page holds
every incident (admin only); a tenant's page the incidents that concern it, with the node's steps
and its own only, 404 for another tenant's."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.services import queries
from pdp.product.console.common import own_tenant, require_admin
from pdp.product.console.pages.incidents.timeline import PREFIX, timelines
from pdp.product.console.render import page
from pdp.product.console.session import Viewer


def _incidents(request: Request, who: Principal, tenant: str | None) -> Response:
    # The whole trail for a tenant too: the node's own steps (fault, cordon, resolution) are
    # recorded for no tenant; timelines() keeps only the incidents with a record of the tenant's.
    nodes = timelines(queries.audit_records(), queries.workflow_statuses(PREFIX), tenant)
    title = "Incidents" + (f" of {tenant}" if tenant else "")
    return page(request, "incidents.html", who, title=title, tenant=tenant, nodes=nodes)


def router(api: FastAPI) -> APIRouter:
    r = APIRouter()

    @r.get("/admin/incidents")
    def all_incidents(request: Request, who: Viewer) -> Response:
        require_admin(who)
        return _incidents(request, who, None)

    @r.get("/tenants/{tenant}/incidents")
    def tenant_incidents(request: Request, tenant: str, who: Viewer) -> Response:
        own_tenant(api, who, tenant)  # 404 for another tenant's
        return _incidents(request, who, tenant)

    return r

"""SLAs: each running deployment's objective, measured p99 and availability, burn rates, error
budget left and alerts, and the credits recorded — `GET /v1/sla`'s answer, asked through the
API's own route (a tenant gets its own only) — with the failed-request ratio over time from the
recording rules Prometheus evaluates (pdp/telemetry/sla_rules.py), when it has them."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from starlette.responses import Response

from pdp.lifecycle.bearer_tokens import Principal
from pdp.product.console.calls import Refused, call
from pdp.product.console.charts.source import legend_by, range_chart, window_of
from pdp.product.console.render import page
from pdp.product.console.session import Viewer
from pdp.product.console.views_common import detail_text, own_tenant, require_admin
from pdp.telemetry.sla_rules import RECORDS

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def failed_ratio_promql(tenant: str | None) -> str:
    """The 5-minute failed-request ratio per deployment (of `tenant`'s when given)."""
    if tenant is not None and not _NAME.match(tenant):
        raise HTTPException(404, f"no tenant {tenant!r}")
    selector = f'{{tenant="{tenant}"}}' if tenant else ""
    return RECORDS["availability"].format(window="5m") + selector


def _sla(
    request: Request, api: FastAPI, who: Principal, tenant: str | None, window: float | None
) -> Response:
    view: dict[str, Any] | None = None
    problem = ""
    try:
        view = call(api, "GET", "/v1/sla", caller=who, tenant=tenant)
    except Refused as exc:  # 409: no Prometheus; 502: it did not answer
        problem = f"No SLA measurement: {detail_text(exc.detail)}"
    ratio = range_chart(
        "Failed-request ratio per deployment (5 min rate)", "ratio", failed_ratio_promql(tenant),
        legend_by("tenant", "deployment"), window=window_of(window),
    )  # fmt: skip
    return page(
        request, "sla.html", who, title="SLAs" + (f" of {tenant}" if tenant else ""), tenant=tenant,
        view=view, problem=problem, ratio=ratio,
    )  # fmt: skip


def router(api: FastAPI) -> APIRouter:
    r = APIRouter()

    @r.get("/admin/sla")
    def all_sla(request: Request, who: Viewer, window: float | None = None) -> Response:
        require_admin(who)
        return _sla(request, api, who, None, window)

    @r.get("/tenants/{tenant}/sla")
    def tenant_sla(request: Request, tenant: str, who: Viewer, window: float | None = None) -> Response:
        own_tenant(api, who, tenant)  # 404 for another tenant's
        return _sla(request, api, who, tenant, window)

    return r

"""SLAs: each running deployment's objective, measured p99 and availability, burn rates, error
budget left and alerts, and the credits recorded — `GET /v1/sla`'s answer, asked through the
API's own route (a tenant gets its own only) — with the failed-request ratio and the burn rates
against the alerts' thresholds over time, from the recording rules Prometheus evaluates
(pdp/telemetry/sla_rules.py), when it has them (pdp/product/console/pages/sla/charts.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.services import queries
from pdp.product.console.calls import Refused, call
from pdp.product.console.charts.source import legend_by, range_chart, window_of
from pdp.product.console.common import detail_text, own_tenant, require_admin
from pdp.product.console.pages.sla.charts import budgets_of, burn_charts, failed_ratio_promql
from pdp.product.console.render import page
from pdp.product.console.session import Viewer
from pdp.telemetry.sla import fleet_windows


def _sla(
    request: Request,
    api: FastAPI,
    who: Principal,
    tenant: str | None,
    window: float | None,
    records: list[dict[str, Any]],
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
    # The alerts' windows and thresholds are the fleet's, as the rule file was written from them.
    burns = burn_charts(budgets_of(records), fleet_windows(queries.fleet()), window_of(window))
    return page(
        request, "sla.html", who, title="SLAs" + (f" of {tenant}" if tenant else ""), tenant=tenant,
        view=view, problem=problem, ratio=ratio, burns=burns,
    )  # fmt: skip


def router(api: FastAPI) -> APIRouter:
    r = APIRouter()

    @r.get("/admin/sla")
    def all_sla(request: Request, who: Viewer, window: float | None = None) -> Response:
        require_admin(who)
        return _sla(request, api, who, None, window, call(api, "GET", "/v1/tenants", caller=who))

    @r.get("/tenants/{tenant}/sla")
    def tenant_sla(request: Request, tenant: str, who: Viewer, window: float | None = None) -> Response:
        record = own_tenant(api, who, tenant)  # 404 for another tenant's
        return _sla(request, api, who, tenant, window, [record])

    return r

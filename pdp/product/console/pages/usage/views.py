"""Usage: GPUs entitled against GPUs held over time, per tenant and GPU class, the deployments
waiting for capacity and the workloads pending in Kueue, from the worker's Prometheus (charts.py
says which series). The admin sees
every active tenant (`/admin/usage`), a tenant its own (`/tenants/{tenant}/usage`, 404 for
another's): its queries select its own tenant label and namespaces, whatever the request says."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.services import queries
from pdp.product.console.calls import call
from pdp.product.console.charts.source import NoChart, legend_by, range_chart, window_of
from pdp.product.console.common import own_tenant, require_admin
from pdp.product.console.pages.usage.charts import (
    entitled_and_held_promql,
    kueue_pending_promql,
    queued_promql,
)
from pdp.product.console.render import page
from pdp.product.console.session import Viewer


def owners_of(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """tenant -> namespaces of the active tenants among `records` (GET /v1/tenants's)."""
    return {
        str(r["name"]): [str(n) for n in (r.get("policy") or {}).get("namespaces") or []]
        for r in records
        if r.get("state") == "active"
    }


def _usage(
    request: Request, who: Principal, tenant: str | None, records: list[dict[str, Any]], window: float | None
) -> Response:
    seconds = window_of(window)
    owners = owners_of(records)
    gpu_classes = queries.fleet().get("gpu_classes") or {}
    of = f" of {tenant}" if tenant else ", all tenants"
    entitled = range_chart(
        f"GPUs entitled and held per GPU class{of}", "GPUs",
        entitled_and_held_promql(tenant, owners, gpu_classes),
        legend_by("tenant", "gpu_class", "measure"), window=seconds,
    )  # fmt: skip
    queue = range_chart(
        f"Deployments waiting for capacity per GPU class{of}", "deployments", queued_promql(tenant),
        legend_by("tenant", "gpu_class"), window=seconds,
    )  # fmt: skip
    kueue_title = f"Workloads pending in Kueue{of}"
    pending = kueue_pending_promql(sorted(owners))
    kueue = (
        range_chart(kueue_title, "workloads", pending, legend_by("tenant", "status"), window=seconds)
        if pending
        else NoChart(kueue_title, "No chart: no active tenant.")
    )
    return page(
        request, "usage.html", who, title="Usage" + (f" of {tenant}" if tenant else ""), tenant=tenant,
        tenants=sorted(owners), entitled=entitled, queue=queue, kueue=kueue,
    )  # fmt: skip


def router(api: FastAPI) -> APIRouter:
    r = APIRouter()

    @r.get("/admin/usage")
    def all_usage(request: Request, who: Viewer, window: float | None = None) -> Response:
        require_admin(who)
        return _usage(request, who, None, call(api, "GET", "/v1/tenants", caller=who), window)

    @r.get("/tenants/{tenant}/usage")
    def tenant_usage(request: Request, tenant: str, who: Viewer, window: float | None = None) -> Response:
        record = own_tenant(api, who, tenant)  # 404 for another tenant's
        return _usage(request, who, tenant, [record], window)

    return r

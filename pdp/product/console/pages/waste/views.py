"""Waste: GPUs that tenants hold and do not use, over the last hour, from the worker's Prometheus
(DCGM metrics, the thresholds of pdp/telemetry/waste.py), and the reclaims the lifecycle ran, one
row per reclaim with its state (reclaims.py). The admin sees every namespace and reclaim; a tenant
its own namespaces and reclaims only (another tenant's page is 404)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from starlette.responses import Response

from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.services import queries
from pdp.product.console.calls import call
from pdp.product.console.charts.source import legend_by, range_chart, window_of
from pdp.product.console.common import own_tenant, require_admin
from pdp.product.console.pages.waste.reclaims import PREFIX, Reclaim
from pdp.product.console.pages.waste.reclaims import reclaims as grouped
from pdp.product.console.render import page
from pdp.product.console.session import Viewer
from pdp.telemetry.prometheus import PrometheusClient, PrometheusError
from pdp.telemetry.waste import Thresholds, WasteReport, waste_report

MAX_UTILIZATION = 5  # percent, as the waste report's default
MAX_MEMORY_MIB = 1024
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def idle_promql(namespaces: list[str] | None) -> str:
    """GPUs idle now (utilization and framebuffer below the thresholds), counted per namespace;
    only `namespaces` when given (each a Kubernetes name, so nothing else reaches the query)."""
    if namespaces is None:
        selector = 'namespace!=""'
    else:
        if not namespaces or any(not _NAMESPACE.fullmatch(n) for n in namespaces):
            raise HTTPException(422, f"namespaces {namespaces!r}: expected Kubernetes namespace names")
        selector = f'namespace=~"{"|".join(namespaces)}"'
    return (
        f"count by (namespace) ((DCGM_FI_DEV_GPU_UTIL{{{selector}}} < {MAX_UTILIZATION})"
        f" and (DCGM_FI_DEV_FB_USED{{{selector}}} < {MAX_MEMORY_MIB}))"
    )


def reclaims(tenant: str | None) -> list[Reclaim]:
    """The reclaims (of one tenant): in flight first, newest first (reclaims.py)."""
    return grouped(queries.audit_records(tenant), queries.workflow_statuses(PREFIX))


def gpu_hours(records: list[dict[str, Any]], tenant: str | None) -> dict[str, Any] | str:
    """The waste report over the last hour (pdp/telemetry/waste.py, as POST /v1/reclaim computes
    it): GPU-hours idle per tenant, deployment and pool; for `tenant`, its own GPUs only (a pool's
    figure then counts that tenant's GPUs in it). Why there is none, in words, otherwise."""
    url = queries.prometheus_url()
    if not url:
        return "No waste report: the worker reads no Prometheus (start it with --prometheus URL)."
    policies = {str(t["name"]): t["policy"] for t in records if t.get("state") == "active"}
    try:
        with PrometheusClient(url, timeout=5.0) as prometheus:
            report = waste_report(prometheus, policies, queries.fleet(), Thresholds())
    except PrometheusError as exc:
        return f"No waste report: Prometheus did not answer ({exc})."
    if tenant is not None:
        report = WasteReport(report.thresholds, [r for r in report.rows if r.tenant == tenant])
    return report.as_json()


def _waste(
    request: Request,
    who: Principal,
    tenant: str | None,
    namespaces: list[str] | None,
    window: float | None,
    records: list[dict[str, Any]],
) -> Response:
    title = "Waste" + (f" of {tenant}" if tenant else "")
    promql, legend = idle_promql(namespaces), legend_by("namespace")
    idle = range_chart("Idle GPUs per namespace", "GPUs", promql, legend, window=window_of(window))
    return page(
        request, "waste.html", who, title=title, tenant=tenant, namespaces=namespaces, idle=idle,
        reclaims=reclaims(tenant), report=gpu_hours(records, tenant),
        thresholds={"max_utilization": MAX_UTILIZATION, "max_memory_mib": MAX_MEMORY_MIB},
    )  # fmt: skip


def router(api: FastAPI) -> APIRouter:
    r = APIRouter()

    @r.get("/admin/waste")
    def all_waste(request: Request, who: Viewer, window: float | None = None) -> Response:
        require_admin(who)
        records = call(api, "GET", "/v1/tenants", caller=who)
        return _waste(request, who, None, None, window, records)

    @r.get("/tenants/{tenant}/waste")
    def tenant_waste(request: Request, tenant: str, who: Viewer, window: float | None = None) -> Response:
        record = own_tenant(api, who, tenant)
        namespaces = [str(n) for n in (record.get("policy") or {}).get("namespaces") or []]
        return _waste(request, who, tenant, namespaces, window, [record])

    return r

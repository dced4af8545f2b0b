"""`POST /v1/reclaim` (admin): the waste report over the worker's Prometheus, and a reclaim
workflow (pdp/lifecycle/workflows/reclaim.py) started for each running deployment it finds
holding idle GPUs. A deployment whose reclaim is still running gets no second one.
"""

from __future__ import annotations

from typing import Annotated, Any

from dbos import DBOS
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from pdp.lifecycle.runtime import current
from pdp.lifecycle.states import DeploymentState, TenantState
from pdp.lifecycle.workflows.reclaim import reclaim_workflow, workflow_prefix
from pdp.product.api import accepted
from pdp.product.auth import Caller, require_admin
from pdp.telemetry.prometheus import PrometheusClient, PrometheusError
from pdp.telemetry.waste import Thresholds, waste_report

router = APIRouter(tags=["reclaim"])

_UNFINISHED = ["PENDING", "ENQUEUED"]


class ReclaimRequest(BaseModel):
    window: str = Field(default="1h", description="the waste window (a Prometheus duration: 30s, 15m, 1h)")
    step: str = Field(default="1m", description="how often GPU-hours are sampled within the window")
    max_utilization: Annotated[float, Field(ge=0, le=100)] = 5.0
    max_memory_mib: Annotated[float, Field(ge=0)] = 1024.0
    tenant: str | None = Field(default=None, description="only this tenant's deployments")
    consent: bool = Field(default=False, description="the tenants consented to go below their entitlement")


def _thresholds(body: ReclaimRequest) -> Thresholds:
    try:
        return Thresholds(body.window, body.step, body.max_utilization, body.max_memory_mib)
    except ValueError as exc:
        raise HTTPException(422, str(exc).replace("--", "")) from exc


@router.post("/v1/reclaim", status_code=202)
def reclaim(body: ReclaimRequest, caller: Caller) -> dict[str, Any]:
    """`started`: the reclaim workflow of each idle running deployment; `skipped`: an idle
    deployment with a reclaim still running, or not the lifecycle's; `report`: the waste report."""
    require_admin(caller)
    rt = current()
    thresholds = _thresholds(body)
    if not rt.settings.prometheus_url:
        raise HTTPException(409, "the worker reads no Prometheus: start it with --prometheus URL")
    tenants = {t["name"]: t for t in rt.store.tenants() if t["state"] == TenantState.ACTIVE}
    try:
        with PrometheusClient(rt.settings.prometheus_url) as prometheus:
            report = waste_report(
                prometheus, {n: t["policy"] for n, t in tenants.items()}, rt.policy.fleet, thresholds
            )
    except PrometheusError as exc:
        raise HTTPException(502, str(exc)) from exc
    idle: dict[tuple[str, str], int] = {}
    pools: dict[tuple[str, str], set[str]] = {}
    for row in report.rows:
        if row.idle_now and row.tenant in tenants and body.tenant in (None, row.tenant):
            idle[(row.tenant, row.deployment)] = idle.get((row.tenant, row.deployment), 0) + 1
            pools.setdefault((row.tenant, row.deployment), set()).add(row.pool)
    started: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    limits = {"max_utilization": body.max_utilization, "max_memory_mib": body.max_memory_mib}
    for (tenant, deployment), gpus in sorted(idle.items()):
        entry = {"tenant": tenant, "deployment": deployment, "idle_gpus": gpus}
        running = {d["name"] for d in rt.store.deployments(tenant) if d["state"] == DeploymentState.RUNNING}
        if deployment not in running:
            skipped.append({**entry, "reason": "not a running deployment of the lifecycle"})
            continue
        prefix = workflow_prefix(tenant, deployment)
        earlier = DBOS.list_workflows(workflow_id_prefix=prefix, load_input=False, load_output=False)
        pending = [w.workflow_id for w in earlier if w.status in _UNFINISHED]
        if pending:
            skipped.append({**entry, "reason": f"reclaim {pending[0]} is still running"})
            continue
        # The n-th reclaim of the deployment: two reports racing start the same workflow id, which
        # DBOS runs once.
        workflow_id = f"{prefix}{len(earlier) + 1}"
        accepted.start(
            workflow_id,
            reclaim_workflow,
            tenant,
            deployment,
            gpus,
            limits,
            body.consent,
            caller.actor,
            sorted(pools[(tenant, deployment)]),
        )
        started.append({**entry, "workflow_id": workflow_id})
    return {"started": started, "skipped": skipped, "report": report.as_json()}

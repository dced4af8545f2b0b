"""Measured SLAs over the product API.

`GET /v1/sla`: each running deployment's measured p99 latency and availability, burn rates, the
error budget left and the alerts firing, with the SLA credits recorded; a tenant token sees its own
deployments and credits only. `POST /v1/sla/check` (admin): the check the worker also runs
periodically, starting an escalation workflow (pdp/lifecycle/workflows/sla_escalation.py) for each
breaching deployment that has none running and none within the cooldown.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import sla_checks, sla_metrics
from pdp.lifecycle.workflows.sla_escalation import start_escalations
from pdp.product.auth import Caller, require_admin
from pdp.telemetry.prometheus import PrometheusError

router = APIRouter(tags=["sla"])


class SlaCheck(BaseModel):
    tenant: str | None = Field(default=None, description="only this tenant's deployments")


@router.get("/v1/sla")
def show_sla(caller: Caller, tenant: str | None = None) -> dict[str, Any]:
    """Per deployment: `p99_ms`, `availability`, `burn_rates` (per objective and window),
    `budget_left`, `alerts`; and `credits`. A tenant token: its own only."""
    if not caller.is_admin:
        if tenant not in (None, caller.tenant):
            raise HTTPException(403, "a tenant token sees its own SLA only")
        tenant = caller.tenant
    try:
        return sla_checks.view(current(), tenant)
    except sla_checks.NoPrometheus as exc:
        raise HTTPException(409, str(exc)) from exc
    except PrometheusError as exc:
        raise HTTPException(502, str(exc)) from exc


@router.post("/v1/sla/check", status_code=202)
def check_sla(body: SlaCheck, caller: Caller) -> dict[str, Any]:
    """`started`: the escalation workflow of each breaching deployment; `skipped`: a breaching
    deployment not escalated now, and why; `report`: the SLA report."""
    require_admin(caller)
    rt = current()
    try:
        report, pools = sla_checks.measure(rt)
    except sla_checks.NoPrometheus as exc:
        raise HTTPException(409, str(exc)) from exc
    except PrometheusError as exc:
        sla_metrics.failed_check()
        raise HTTPException(502, str(exc)) from exc
    sla_metrics.observe(report)
    planned = sla_checks.plan(rt, report, pools, body.tenant)
    start_escalations(planned["start"], caller.actor)
    started = [{k: v for k, v in item.items() if k != "breach"} for item in planned["start"]]
    return {"started": started, "skipped": planned["skipped"], "report": report.as_json()}

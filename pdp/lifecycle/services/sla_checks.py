"""The lifecycle's SLA checks: the measured SLAs of its running deployments (pdp/telemetry/sla.py over
the worker's Prometheus), which of them breach (a burn-rate alert fires), which get an escalation
workflow (pdp/lifecycle/workflows/sla_escalation.py) and what the tenants were credited.

A check runs periodically (a DBOS schedule, the fleet's `sla_alerting.check_schedule`) and on
`POST /v1/sla/check`. A deployment gets one escalation at a time, and none again within the
cooldown after the last one started: the breach it escalated stays in the alert's long window for
a while after the remedy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dbos import DBOS

from pdp.lifecycle.runtime import Runtime
from pdp.lifecycle.states import DeploymentState, TenantState
from pdp.lifecycle.storage import audit
from pdp.telemetry.pool_load import PoolLoad, pool_load
from pdp.telemetry.prometheus import PrometheusClient
from pdp.telemetry.sla import DeploymentSla, SlaReport, Windows, fleet_windows
from pdp.telemetry.sla import sla_report as measure_report
from pdp.telemetry.waste import duration_seconds

SCHEDULE = "sla-check"
EVERY_MINUTE = "0 * * * * *"
CREDIT_EVENT = "sla.credit"
_UNFINISHED = ("PENDING", "ENQUEUED")
_SEVERITY = {"fast": 0, "slow": 1}


class NoPrometheus(RuntimeError):
    """The worker reads no Prometheus, so no SLA can be measured."""


@dataclass(frozen=True)
class Alerting:
    windows: Windows
    schedule: str
    cooldown_seconds: float


def alerting(fleet: Mapping[str, Any]) -> Alerting:
    """The fleet's `sla_alerting` (the SRE workbook's defaults for what it leaves out)."""
    conf = fleet.get("sla_alerting") or {}
    windows = fleet_windows(fleet)
    cooldown = duration_seconds(conf.get("cooldown", windows.slow_long), "fleet.sla_alerting.cooldown")
    return Alerting(windows, str(conf.get("check_schedule", EVERY_MINUTE)), cooldown)


def _tenants(rt: Runtime) -> dict[str, dict[str, Any]]:
    return {str(t["name"]): dict(t["policy"]) for t in rt.store.tenants() if t["state"] == TenantState.ACTIVE}


def measure(rt: Runtime) -> tuple[SlaReport, PoolLoad]:
    """The SLA report of the active tenants and the pools' load; NoPrometheus, PrometheusError."""
    url = rt.settings.prometheus_url
    if not url:
        raise NoPrometheus("the worker reads no Prometheus: start it with --prometheus URL")
    windows = alerting(rt.policy.fleet).windows
    with PrometheusClient(url) as prometheus:
        return measure_report(prometheus, _tenants(rt), windows), pool_load(prometheus, rt.policy.fleet)


def worst_alert(row: DeploymentSla) -> dict[str, Any]:
    """The alert the escalation is about: fast before slow, then the faster burn."""
    return min(row.alerts, key=lambda a: (_SEVERITY[a["severity"]], -a["burn_rate_long"]))


def breach_of(row: DeploymentSla, pools: PoolLoad) -> dict[str, Any]:
    """The sla_breach payload's measured part (the workflow adds the deployment's GPU class)."""
    alert = worst_alert(row)
    measured = {"p99_ms": row.p99_ms, "availability": row.availability}
    return {
        "objective": alert["objective"],
        "severity": alert["severity"],
        "burn_rate": round(min(alert["burn_rate_long"], 1e6), 1),
        "measured": {k: round(v, 1 if k == "p99_ms" else 3) for k, v in measured.items() if v is not None},
        "current_pools": pools.pools_of(row.namespace, row.deployment),
        "pool_load": dict(pools.load),
    }


def workflow_prefix(tenant: str, deployment: str) -> str:
    """The ids of a deployment's escalations (`:` is in no tenant or deployment name)."""
    return f"sla-escalation:{tenant}:{deployment}:"


def plan(rt: Runtime, report: SlaReport, pools: PoolLoad, only_tenant: str | None) -> dict[str, Any]:
    """Which breaching deployments get an escalation now, under which workflow id, and why the
    others do not (not the lifecycle's, one still running, one started within the cooldown)."""
    cooldown = alerting(rt.policy.fleet).cooldown_seconds
    running = {
        (str(d["tenant"]), str(d["name"]))
        for d in rt.store.deployments()
        if d["state"] == DeploymentState.RUNNING
    }
    start: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    now_ms = time.time() * 1000
    for row in report.breaches():
        if only_tenant not in (None, row.tenant):
            continue
        entry = {"tenant": row.tenant, "deployment": row.deployment, "alerts": row.alerts}
        if (row.tenant, row.deployment) not in running:
            skipped.append({**entry, "reason": "not a running deployment of the lifecycle"})
            continue
        prefix = workflow_prefix(row.tenant, row.deployment)
        earlier = DBOS.list_workflows(workflow_id_prefix=prefix, load_input=False, load_output=False)
        pending = [w.workflow_id for w in earlier if w.status in _UNFINISHED]
        if pending:
            skipped.append({**entry, "reason": f"escalation {pending[0]} is still running"})
            continue
        latest = max((int(w.created_at or 0) for w in earlier), default=0)
        if latest and now_ms - latest < cooldown * 1000:
            left = cooldown - (now_ms - latest) / 1000
            skipped.append({**entry, "reason": f"escalated {len(earlier)} times; cooldown {left:.0f} s left"})
            continue
        # The n-th escalation of the deployment: two checks racing start the same workflow id,
        # which DBOS runs once.
        workflow_id = f"{prefix}{len(earlier) + 1}"
        start.append({**entry, "workflow_id": workflow_id, "breach": breach_of(row, pools)})
    return {"start": start, "skipped": skipped}


def credits(rt: Runtime, tenant: str | None) -> list[dict[str, Any]]:
    """The SLA credits recorded (the audit trail's `sla.credit` records), oldest first."""
    return [
        {"tenant": r["tenant"], "at": r.get("at", ""), "workflow_id": r.get("workflow_id", ""), **r["detail"]}
        for r in audit.records(rt.db, tenant)
        if r.get("event") == CREDIT_EVENT
    ]


def view(rt: Runtime, tenant: str | None) -> dict[str, Any]:
    """GET /v1/sla: each deployment measured (only `tenant`'s when given), and the credits."""
    report, pools = measure(rt)
    rows = [row.as_json() for row in report.rows if tenant is None or row.tenant == tenant]
    for row in rows:
        row["pools"] = pools.pools_of(row["namespace"], row["deployment"])
    return {**report.as_json(), "deployments": rows, "credits": credits(rt, tenant)}

"""SLA escalation (issue 18): a deployment burning its SLA's error budget (a burn-rate alert of
pdp/lifecycle/services/sla_checks.py firing) is decided as an `sla_breach` intent
(policies/gpupaas/sla_breach), and the decision's constraints.sla_escalation is carried out:

1. decide: the intent completed from the store (the deployment's GPU class) and the measurement
   (objective, alert, burn rate, where it runs, the pools' load), recorded like every decision;
2. notify: the decision's warnings, the notice, in the tenant's audit trail (`sla.notified`);
3. re-check: the SLA measured again; an alert no longer firing for the objective (the breach
   ended), or a Prometheus that cannot answer, cancels (`sla.cancelled`): it never acts on a guess;
4. act: `replace`, the deployment re-placed onto the chosen pool inside the tenant's serialization
   (pdp/lifecycle/services/sla_replace.py; `sla.replaced`, or `sla.replace_failed` and then the tier's
   credit, the decision's `fallback_credit_percent`: not moved, the breach goes on); `credit`, the
   credit recorded (`sla.credit`, what GET /v1/sla lists); `notify`, nothing more;
5. audit: `sla.escalated` with the outcome.

Every step is checkpointed, so a worker killed anywhere resumes after its last completed step and
each effect (notice, re-placement, credit, record) happens once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dbos import DBOS, SetWorkflowID
from dbos import error as dbos_errors

from pdp.lifecycle import test_faults
from pdp.lifecycle.runtime import Runtime, current
from pdp.lifecycle.services import realize, sla_checks, sla_metrics, sla_replace
from pdp.lifecycle.workflows.serial import in_partition
from pdp.lifecycle.workflows.steps import RETRY, begin, intent, key, record_decision, record_step, request_id
from pdp.telemetry.prometheus import PrometheusError


def _running(tenant: str, deployment: str) -> dict[str, Any] | None:
    return realize.running_deployment(current(), tenant, deployment)


@DBOS.step()
def sla_decision_step(tenant: str, deployment: str, breach: dict[str, Any], actor: str) -> dict[str, Any]:
    """The sla_breach intent of the deployment as the store has it now, decided and recorded."""
    test_faults.at_step("sla:decide")
    rt = current()
    dep = _running(tenant, deployment)
    if dep is None:
        return {
            "status": "refused",
            "reason": f"deployment {deployment!r} of tenant {tenant!r} is not running",
        }
    payload = {"deployment": deployment, "gpu_class": dep["spec"]["gpu_class"], **breach}
    asked = intent(tenant, "sla_breach", payload, actor)
    decision = rt.policy.decide(asked)
    record_decision(asked, decision)
    tier = str(rt.store.tenant(tenant)["policy"].get("tier", ""))
    return {"status": "decided", "decision": decision, "payload": payload, "tier": tier}


@DBOS.step()
def sla_recheck_step(tenant: str, deployment: str, objective: str) -> dict[str, Any]:
    """The deployment's SLA measured again: whether an alert on `objective` still fires."""
    test_faults.at_step("sla:recheck")
    try:
        report, _ = sla_checks.measure(current())
    except (sla_checks.NoPrometheus, PrometheusError) as exc:
        return {"error": str(exc)}
    row = next((r for r in report.rows if (r.tenant, r.deployment) == (tenant, deployment)), None)
    if row is None:
        return {"firing": False, "reason": "no request of the deployment was measured"}
    firing = [a for a in row.alerts if a["objective"] == objective]
    return {
        "firing": bool(firing),
        "alerts": row.alerts,
        "p99_ms": row.p99_ms,
        "availability": row.availability,
    }


@DBOS.step(**RETRY)
def sla_replace_step(tenant: str, deployment: str, pool: str, actor: str) -> dict[str, Any]:
    test_faults.at_step("sla:replace")
    return sla_replace.onto_pool(
        current(), tenant, deployment, pool, actor=actor, cause=f"SLA escalation {request_id()}",
        event_key=f"{key()}:replaced", workflow_id=request_id(),
    )  # fmt: skip


@DBOS.workflow()
def sla_replace_workflow(
    tenant: str, deployment: str, pool: str, actor: str, grant: dict[str, Any], request_of: str
) -> dict[str, Any]:
    """Inside the tenant's serialization: the deployment re-placed onto `pool`. A move that still
    fails after its retries is a move that did not happen (the escalation then credits), not a
    failed escalation."""
    begin(request_of)
    try:
        return sla_replace_step(tenant, deployment, pool, actor)
    except dbos_errors.DBOSMaxStepRetriesExceeded as exc:
        last = exc.errors[-1] if exc.errors else exc
        why = f"the move failed {exc.max_retries} times, last: {last}"
    except Exception as exc:
        why = f"the move failed: {exc}"
    return {"deployment": deployment, "pool": pool, "replaced": False, "reason": why}


@DBOS.step()
def sla_outcome_step(tier: str, outcome: str, credit_percent: float) -> None:
    sla_metrics.escalated(tier, outcome, credit_percent)


def _end(
    tenant: str, tier: str, status: str, detail: dict[str, Any], decision: dict[str, Any]
) -> dict[str, Any]:
    credit = float(detail.get("credit_percent", 0)) if status == "credited" else 0.0
    record_step(tenant, "sla.escalated", {**detail, "outcome": status}, decision)
    sla_outcome_step(tier, status, credit)
    return {"status": status, **detail, "decision_id": decision.get("decision_id", "")}


def _credit(
    tenant: str,
    tier: str,
    base: dict[str, Any],
    breach: dict[str, Any],
    percent: int,
    decision: dict[str, Any],
    *,
    because: str = "",
) -> dict[str, Any]:
    credit = {
        **base,
        "credit_percent": percent,
        "burn_rate": breach["burn_rate"],
        "measured": breach.get("measured", {}),
        "decision_id": decision["decision_id"],
        **({"because": because} if because else {}),
    }
    record_step(tenant, sla_checks.CREDIT_EVENT, credit, decision)
    return _end(tenant, tier, "credited", credit, decision)


@DBOS.workflow()
def sla_escalation_workflow(
    tenant: str, deployment: str, breach: dict[str, Any], actor: str
) -> dict[str, Any]:
    """Decide, notify, re-check, act, audit (module docstring)."""
    begin()
    verdict = sla_decision_step(tenant, deployment, breach, actor)
    if verdict["status"] != "decided":
        record_step(tenant, "sla.refused", {"deployment": deployment, "reason": verdict["reason"]}, {})
        return verdict
    decision, tier = verdict["decision"], verdict["tier"]
    base = {"deployment": deployment, "objective": breach["objective"], "severity": breach["severity"]}
    if decision["outcome"] != "ALLOW":
        codes = [r["code"] for r in decision["reasons"]]
        return _end(tenant, tier, "denied", {**base, "reasons": codes}, decision)
    plan = dict(decision["constraints"]["sla_escalation"])
    notice = {
        **base,
        **plan,
        "burn_rate": breach["burn_rate"],
        "measured": breach.get("measured", {}),
        "notice": [w["message"] for w in decision["warnings"]],
        "codes": [w["code"] for w in decision["warnings"]],
    }
    record_step(tenant, "sla.notified", notice, decision)
    seen = sla_recheck_step(tenant, deployment, breach["objective"])
    if "error" in seen or not seen["firing"]:
        reason = seen.get("error") or seen.get("reason") or f"no {breach['objective']} alert fires any more"
        record_step(tenant, "sla.cancelled", {**base, "reason": reason}, decision)
        return _end(tenant, tier, "cancelled", {**base, "reason": reason}, decision)
    if plan["action"] == "replace":
        moved = in_partition(
            tenant, f"{request_id()}:replace", sla_replace_workflow,
            tenant, deployment, plan["target_pool"], actor, {}, request_id(),
        )  # fmt: skip
        detail = {**base, "from_pools": plan["from_pools"], "to_pool": plan["target_pool"], "result": moved}
        replaced = bool(moved.get("replaced"))
        record_step(tenant, "sla.replaced" if replaced else "sla.replace_failed", detail, decision)
        if replaced:
            return _end(tenant, tier, "replaced", detail, decision)
        # Not moved after all: the breach goes on where it is, so the tier's credit is owed.
        owed = int(plan.get("fallback_credit_percent", 0))
        if owed <= 0:
            return _end(tenant, tier, "failed", detail, decision)
        because = f"not moved onto pool {plan['target_pool']}: {moved.get('reason', 'unknown')}"
        return _credit(tenant, tier, base, breach, owed, decision, because=because)
    if plan["action"] == "credit":
        return _credit(tenant, tier, base, breach, int(plan["credit_percent"]), decision)
    return _end(tenant, tier, "notified", base, decision)


@DBOS.step()
def sla_plan_step() -> dict[str, Any]:
    """The SLA measured now and the escalations it calls for (sla_checks.plan)."""
    rt = current()
    try:
        report, pools = sla_checks.measure(rt)
    except (sla_checks.NoPrometheus, PrometheusError) as exc:
        sla_metrics.failed_check()
        return {"error": str(exc), "start": [], "skipped": []}
    sla_metrics.observe(report)
    return {**sla_checks.plan(rt, report, pools, None), "report": report.as_json()}


def start_escalations(items: list[dict[str, Any]], actor: str) -> None:
    """Each planned escalation started under its id (durably; from a workflow, as its child)."""
    for item in items:
        with SetWorkflowID(item["workflow_id"]):
            DBOS.start_workflow(
                sla_escalation_workflow, item["tenant"], item["deployment"], item["breach"], actor
            )


@DBOS.workflow()
def sla_check_scheduled_workflow(scheduled_at: datetime, context: Any) -> None:
    """The periodic SLA check (DBOS schedule sla_checks.SCHEDULE)."""
    begin()
    start_escalations(sla_plan_step()["start"], "system:sla-check")


def schedule_checks(rt: Runtime) -> None:
    """The periodic check at the fleet's `sla_alerting.check_schedule`, when the worker reads a
    Prometheus; else none (one an earlier start may have left is deleted)."""
    if not rt.settings.prometheus_url:
        DBOS.delete_schedule(sla_checks.SCHEDULE)
        return
    cron = sla_checks.alerting(rt.policy.fleet).schedule
    DBOS.apply_schedules(
        [
            {
                "schedule_name": sla_checks.SCHEDULE,
                "workflow_fn": sla_check_scheduled_workflow,
                "schedule": cron,
            }
        ]
    )

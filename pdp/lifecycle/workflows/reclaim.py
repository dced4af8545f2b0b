"""Reclaiming idle GPUs (issue 18): a deployment the waste report finds idle is decided as a
`reclaim` intent (policies/gpupaas/reclaim), and the decision's constraints.reclaim is carried out:

1. decide: the intent completed from the store now (replicas, GPUs per replica, the tenant's
   usage), recorded like every decision;
2. notify: the decision's warnings, the notice the tenant gets, in its audit trail
   (`reclaim.notified`); an enterprise deployment, or one its entitlement protects, stops here;
3. grace: a durable sleep of the decision's grace seconds (DBOS.sleep: a worker that restarts
   sleeps only what is left);
4. re-check: the deployment's GPUs read again from Prometheus over the grace; a GPU put to work at
   any moment of it (pdp/telemetry/idle.py), a Prometheus that cannot answer, or a deployment
   changed meanwhile, cancels the reclaim (`reclaim.cancelled`): it never acts on a guess;
5. act: a `scale` to the target replicas through the tenant's serialization, the same change a
   tenant's own scale request makes (decided again, applied by pdp/lifecycle/services/realize/);
6. audit: `reclaim.applied` (or `reclaim.failed`) with what the scale changed.

Every step is checkpointed, so a worker killed anywhere resumes after its last completed step and
each effect (notice, scale, audit record) happens once.
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS

from pdp.lifecycle import test_faults
from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import realize
from pdp.lifecycle.workflows.changes import change_workflow
from pdp.lifecycle.workflows.serial import in_partition
from pdp.lifecycle.workflows.steps import begin, intent, record_decision, record_step, request_id
from pdp.telemetry.idle import deployment_idleness
from pdp.telemetry.prometheus import PrometheusClient, PrometheusError


def workflow_prefix(tenant: str, deployment: str) -> str:
    """The ids of a deployment's reclaims (`:` is in no tenant or deployment name): the API runs
    one at a time per deployment."""
    return f"reclaim:{tenant}:{deployment}:"


def _running(tenant: str, deployment: str) -> dict[str, Any] | None:
    return realize.running_deployment(current(), tenant, deployment)


@DBOS.step()
def reclaim_decision_step(
    tenant: str, deployment: str, idle_gpus: int, consent: bool, actor: str
) -> dict[str, Any]:
    """The reclaim intent of the deployment as the store has it now, decided and recorded."""
    test_faults.at_step("reclaim:decide")
    rt = current()
    dep = _running(tenant, deployment)
    if dep is None:
        return {
            "status": "refused",
            "reason": f"deployment {deployment!r} of tenant {tenant!r} is not running",
        }
    spec = dep["spec"]
    replicas, per_replica = int(spec["replicas"]), int(spec["gpus_per_replica"])
    payload: dict[str, Any] = {
        "deployment": deployment,
        "gpu_class": spec["gpu_class"],
        "gpus_per_replica": per_replica,
        "current_replicas": replicas,
        "idle_gpus": min(idle_gpus, replicas * per_replica),
    }
    if consent:
        payload["consent"] = True
    asked = {**intent(tenant, "reclaim", payload, actor), "usage": rt.store.usage(tenant)}
    decision = rt.policy.decide(asked)
    record_decision(asked, decision)
    return {"status": "decided", "decision": decision, "payload": payload}


@DBOS.step()
def recheck_step(
    tenant: str, deployment: str, seconds: float, thresholds: dict[str, float]
) -> dict[str, Any]:
    """The deployment's GPUs over the last `seconds` (the grace), or why they could not be read."""
    test_faults.at_step("reclaim:recheck")
    rt = current()
    url = rt.settings.prometheus_url
    if not url:
        return {"error": "the worker reads no Prometheus (--prometheus)"}
    namespaces = [str(n) for n in rt.store.tenant(tenant)["policy"]["namespaces"]]
    try:
        with PrometheusClient(url) as prometheus:
            seen = deployment_idleness(prometheus, namespaces, deployment, seconds, **thresholds)
    except PrometheusError as exc:
        return {"error": str(exc)}
    return seen.as_json()


@DBOS.step()
def replicas_step(tenant: str, deployment: str) -> int:
    """The replicas the deployment holds now (-1 when it no longer runs)."""
    dep = _running(tenant, deployment)
    return int(dep["spec"]["replicas"]) if dep else -1


def _cancelled(tenant: str, detail: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    record_step(tenant, "reclaim.cancelled", detail, decision)
    return {"status": "cancelled", **detail, "decision_id": decision["decision_id"]}


@DBOS.workflow()
def reclaim_workflow(
    tenant: str,
    deployment: str,
    idle_gpus: int,
    thresholds: dict[str, float],
    consent: bool,
    actor: str,
    pools: list[str] | None = None,
) -> dict[str, Any]:
    """Decide, notify, wait the grace, re-check, act, audit (module docstring). `pools`: where the
    waste report saw the idle GPUs, kept in the notice (the console shows what was reclaimed where)."""
    begin()
    verdict = reclaim_decision_step(tenant, deployment, idle_gpus, consent, actor)
    if verdict["status"] != "decided":
        record_step(tenant, "reclaim.refused", {"deployment": deployment, "reason": verdict["reason"]}, {})
        return verdict
    decision = verdict["decision"]
    if decision["outcome"] != "ALLOW":
        codes = [r["code"] for r in decision["reasons"]]
        record_step(tenant, "reclaim.refused", {"deployment": deployment, "reasons": codes}, decision)
        return {"status": "denied", "reasons": codes, "decision_id": decision["decision_id"]}
    plan = dict(decision["constraints"]["reclaim"])
    current_replicas = int(verdict["payload"]["current_replicas"])
    notice = {
        "deployment": deployment,
        **plan,
        "current_replicas": current_replicas,
        "idle_gpus": verdict["payload"]["idle_gpus"],
        "gpu_class": verdict["payload"]["gpu_class"],
        "pools": sorted(pools or []),
        "notice": [w["message"] for w in decision["warnings"]],
        "codes": [w["code"] for w in decision["warnings"]],
    }
    record_step(tenant, "reclaim.notified", notice, decision)
    if plan["action"] == "notify":
        return {"status": "notified", **notice, "decision_id": decision["decision_id"]}
    grace = float(plan["grace_seconds"])
    DBOS.sleep(grace)
    seen = recheck_step(tenant, deployment, grace, thresholds)
    target = int(plan["target_replicas"])
    if "error" in seen:
        return _cancelled(tenant, {"deployment": deployment, "reason": seen["error"]}, decision)
    needed = current_replicas - target
    if seen["idle_gpus"] < needed * int(verdict["payload"]["gpus_per_replica"]):
        reason = f"{seen['busy_gpus']} GPUs were put to work during the grace of {grace:g} s"
        return _cancelled(
            tenant, {"deployment": deployment, "reason": reason, "seen": seen["gpus"]}, decision
        )
    now = replicas_step(tenant, deployment)
    if now != current_replicas:
        reason = f"the deployment changed during the grace ({current_replicas} replicas, now {now})"
        return _cancelled(tenant, {"deployment": deployment, "reason": reason}, decision)
    result = in_partition(
        tenant,
        f"{request_id()}:scale",
        change_workflow,
        tenant,
        "scale",
        {"deployment": deployment, "target_replicas": target},
        actor,
        {},
        request_id(),
    )
    outcome = {
        "deployment": deployment,
        "from_replicas": current_replicas,
        "target_replicas": target,
        "scale": result.get("status"),
        "scale_decision_id": (result.get("decision") or {}).get("decision_id", ""),
    }
    event = "reclaim.applied" if result.get("status") == "applied" else "reclaim.failed"
    record_step(tenant, event, outcome, decision)
    status = "reclaimed" if event == "reclaim.applied" else "failed"
    return {"status": status, **outcome, "decision_id": decision["decision_id"]}

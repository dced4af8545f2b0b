"""Capacity exhaustion: a deployment the scheduler cannot place for lack of GPUs. Preempt lower
tiers if the PDP allows it, else queue (or reject) the request, and notify every affected tenant.

The requester's decision and placement run in its tenant's serialization
(pdp/lifecycle/workflows/serial.py), like every change of its usage; an approval is awaited
outside it. Victims are other tenants' deployments: preemption only lowers their usage, and
their rows are moved without touching their spec (a scale of theirs meanwhile is kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbos import DBOS

from pdp.lifecycle import test_faults
from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import capacity, degradation, realize
from pdp.lifecycle.states import DeploymentState
from pdp.lifecycle.workflows.decide import decide_change_step
from pdp.lifecycle.workflows.serial import negotiate
from pdp.lifecycle.workflows.steps import (
    RETRY,
    begin,
    decide_step,
    key,
    links,
    record_decision,
    request_id,
    tenant_step,
)


@DBOS.step()
def victims_step(
    tenant: str, gpu_class: str, needed: int, cluster: str = "", actor: str = "", record: bool = False
) -> list[dict[str, Any]] | None:
    """The running deployments of other tenants the degradation policy gives up for `needed`
    GPUs of the class, in its order and each as far as it says (preempted, or scaled toward its
    minimum), only those in `cluster` when given (room is made where the deployment goes, never
    elsewhere), or None when its plan cannot free them all. With `record`, the degrade decision
    goes to the audit trail (the queue retry's look-ahead does not record it)."""
    test_faults.at_step("victims")
    rt = current()
    tenants = rt.store.tenants()
    deployments = rt.store.deployments()
    where: dict[tuple[str, str], str] | None = None
    if cluster:
        there = realize.placed_in(rt, cluster)
        deployments = [d for d in deployments if (d["tenant"], d["name"]) in there]
        where = dict.fromkeys(there, cluster)
    tier = next((str(t["policy"].get("tier", "")) for t in tenants if t["name"] == tenant), "")
    rows = degradation.deployments_of_class(gpu_class, tenants, deployments, clusters=where, excluded=tenant)
    asked = degradation.intent(
        "capacity_exhaustion", gpu_class, needed, rows, actor or f"capacity exhaustion: {tenant}",
        cluster=cluster, for_tier=tier,
    )  # fmt: skip
    decision = rt.policy.decide(asked)
    if record:
        record_decision(asked, decision)
    plan = degradation.plan(decision)
    if plan is None or not plan["sufficient"] or not plan["steps"]:
        return None
    return degradation.victims(plan["steps"])


@DBOS.step()
def target_step(tenant: str, payload: dict[str, Any], decision: dict[str, Any]) -> str:
    """The cluster the deployment goes to ("" when the worker manages no clusters): where its
    object is kept (a preempted deployment resumed) while that cluster is still eligible."""
    rt = current()
    kept = rt.store.workloads(tenant).get(str(payload["deployment"]))
    return realize.choose_cluster(rt, tenant, payload, decision, realize.cluster_of(kept) if kept else None)


@DBOS.step(**RETRY)
def preempt_step(
    tenant: str, deployment: str, victims: list[dict[str, Any]], decision: dict[str, Any]
) -> None:
    """Mark the victims preempted and put them back in the queue, or scale them down to the
    replicas the degradation plan leaves them; each change is audited with the preempt decision.
    Keyed per victim, so a re-run after a crash changes each once."""
    test_faults.at_step("preempt")
    rt = current()
    for v in victims:
        dep = next(d for d in rt.store.deployments(v["tenant"]) if d["name"] == v["workload"])
        event_key = f"{key()}:preempted:{v['tenant']}/{v['workload']}"
        ids = {
            "actor": f"preemption for {tenant}/{deployment}",
            "workflow_id": request_id(),
            **links(decision),
        }
        if v.get("action") == "scale":
            scale_down(v, dep["spec"], decision, event_key, ids)
            continue
        # spec None: the row's own, so a scale its tenant applies meanwhile is not undone
        rt.store.put_deployment(
            v["tenant"], v["workload"], DeploymentState.PREEMPTED, None, event_key=event_key, **ids
        )
        realize.evict(
            rt, v["tenant"], dep["spec"], decision, event_key=f"{event_key}:evicted", workflow_id=request_id()
        )
        # Queued at the time of preemption, so the queue retry resumes it when capacity returns.
        rt.store.put_deployment(
            v["tenant"], v["workload"], DeploymentState.QUEUED, None, event_key=f"{event_key}:requeued", **ids
        )
        test_faults.at_step(f"preempted:{v['tenant']}/{v['workload']}")


def scale_down(
    victim: Mapping[str, Any],
    spec: Mapping[str, Any],
    decision: Mapping[str, Any],
    event_key: str,
    ids: dict[str, Any],
) -> None:
    """A victim the plan scales toward its minimum: its spec at the plan's replicas (never up),
    its object re-applied with them in its kept placement."""
    rt = current()
    scaled = {**spec, "replicas": min(int(spec["replicas"]), int(victim["to_replicas"]))}
    who, name = str(victim["tenant"]), str(victim["workload"])
    state = rt.store.put_spec(who, name, scaled, event_key=f"{event_key}:scaled", **ids)
    realize.reapply_workload(
        rt, who, scaled, state, decision, event_key=f"{event_key}:reapplied", workflow_id=request_id()
    )
    test_faults.at_step(f"scaled:{victim['tenant']}/{victim['workload']}")


@DBOS.step(**RETRY)
def settle_step(
    tenant: str, payload: dict[str, Any], state: str, decision: dict[str, Any], cluster: str | None = None
) -> None:
    """Record the request as running (placed, in `cluster` when given), queued or rejected; keyed
    per deployment, since the queue retry settles several in one workflow."""
    test_faults.at_step(f"settle:{state}")
    current().store.put_deployment(
        tenant,
        payload["deployment"],
        state,
        payload,
        event_key=f"{key()}:settle:{tenant}/{payload['deployment']}:{state}",
        workflow_id=request_id(),
        **links(decision),
    )
    if state == DeploymentState.RUNNING:
        event_key = f"{key()}:workload:{tenant}/{payload['deployment']}"
        realize.apply_workload(
            current(),
            tenant,
            payload,
            decision,
            event_key=event_key,
            workflow_id=request_id(),
            cluster=cluster,
        )


@DBOS.step()
def notify_step(tenant: str, outcome: dict[str, Any], decision: dict[str, Any]) -> None:
    """One `capacity.notified` record per affected tenant: the requester and each victim's tenant."""
    rt = current()
    victims = outcome.get("victims", [])
    affected = [(tenant, "requester"), *sorted({(v["tenant"], "victim") for v in victims})]
    for who, role in affected:
        rt.store.record(
            f"{key()}:capacity.notified:{tenant}/{outcome['deployment']}:{who}:{role}",
            event="capacity.notified",
            tenant=who,
            workflow_id=request_id(),
            detail={
                "role": role,
                "outcome": outcome["status"],
                "reason": outcome.get("reason", ""),
                "requester": tenant,
                "deployment": outcome["deployment"],
                "victims": [
                    f"{v['tenant']}/{v['workload']}"
                    for v in victims
                    if role == "requester" or v["tenant"] == who
                ],
            },
            **links(decision),
        )


@DBOS.workflow()
def capacity_change_workflow(
    tenant: str,
    payload: dict[str, Any],
    needed: int,
    queue: bool,
    actor: str,
    grant: dict[str, Any],
    request_of: str,
) -> dict[str, Any]:
    """Inside the tenant's serialization: decide `deploy_model` against the usage now, then
    preempt, queue or reject."""
    begin(request_of)
    name = str(payload["deployment"])
    verdict = decide_change_step(tenant, "deploy_model", payload, actor, grant)
    outcome: dict[str, Any] = {"deployment": name, "victims": [], "preempt_decisions": []}
    if verdict["status"] in ("needs_approval", "superseded", "refused"):
        return {**outcome, **{k: v for k, v in verdict.items() if k != "payload"}}
    decision = verdict["decision"]
    if verdict["status"] == "denied":
        codes = [r["code"] for r in decision["reasons"]]
        outcome.update(status="rejected", reason="denied by policy: " + ", ".join(codes))
        settle_step(tenant, payload, DeploymentState.REJECTED, decision)
        notify_step(tenant, outcome, decision)
        return {**outcome, "decision": decision}
    tier = str(tenant_step(tenant)["policy"].get("tier", ""))
    target = target_step(tenant, payload, decision)
    victims, preempt_decision, reason = make_room(
        tenant, tier, str(payload["gpu_class"]), needed, actor, outcome, target
    )
    if victims:
        preempt_step(tenant, name, victims, preempt_decision)
        settle_step(tenant, payload, DeploymentState.RUNNING, decision, target)
        if target:
            outcome["cluster"] = target
        outcome.update(status="placed", reason="preempted lower-tier deployments", victims=victims)
        notify_step(tenant, outcome, preempt_decision)
    else:
        state = DeploymentState.QUEUED if queue else DeploymentState.REJECTED
        settle_step(tenant, payload, state, decision)
        outcome.update(status=str(state), reason=reason)
        notify_step(tenant, outcome, preempt_decision or decision)
    return {**outcome, "decision": decision}


@DBOS.workflow()
def capacity_workflow(
    tenant: str, payload: dict[str, Any], needed: int, queue: bool, actor: str
) -> dict[str, Any]:
    """A deployment that cannot be placed for lack of GPUs: preempt lower tiers if the PDP allows
    it, else queue (or reject) it; notify every affected tenant."""
    begin()
    name = str(payload["deployment"])
    # The scheduler's word: of what the deployment asks, all but `needed` GPUs are free now.
    report_step(
        str(payload["gpu_class"]), max(0, capacity.gpus(payload) - needed), f"exhaustion: {tenant}/{name}"
    )
    result = negotiate(
        tenant, "deploy_model", capacity_change_workflow, tenant, payload, needed, queue, actor
    )
    if result["status"] != "rejected" or "approval" not in result:
        return result
    outcome = {
        "deployment": name,
        "victims": [],
        "preempt_decisions": [],
        "status": "rejected",
        "reason": f"approval {result['approval']}",
    }
    settle_step(tenant, payload, DeploymentState.REJECTED, result["decision"])
    notify_step(tenant, outcome, result["decision"])
    return {**outcome, "decision": result["decision"]}


def make_room(
    tenant: str,
    tier: str,
    gpu_class: str,
    needed: int,
    actor: str,
    outcome: dict[str, Any],
    cluster: str = "",
) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """(victims the PDP allows to preempt, that decision, reason when there are none) for freeing
    `needed` GPUs of the class for the tenant (in `cluster` when given); appends each preempt
    decision to the outcome."""
    chosen = victims_step(tenant, gpu_class, needed, cluster, actor, True)
    preempt_decision: dict[str, Any] = {}
    where = f" in {cluster}" if cluster else ""
    reason = f"the degradation policy frees no {needed} GPUs of {gpu_class}{where} from lower tiers"
    if not chosen:
        return [], preempt_decision, reason
    preempt_decision = decide_step(capacity.preempt_intent(tenant, tier, chosen, actor), False)
    outcome["preempt_decisions"].append(summary(preempt_decision))
    if preempt_decision["outcome"] == "ALLOW":
        return chosen, preempt_decision, ""
    # All-or-nothing: try once with only the victims the PDP would allow, if they suffice.
    subset = capacity.allowed(chosen, preempt_decision)
    reason = "preemption denied: " + ", ".join(r["code"] for r in preempt_decision["reasons"])
    if subset and sum(int(v["gpus"]) for v in subset) >= needed:
        preempt_decision = decide_step(capacity.preempt_intent(tenant, tier, subset, actor), False)
        outcome["preempt_decisions"].append(summary(preempt_decision))
        if preempt_decision["outcome"] == "ALLOW":
            return subset, preempt_decision, ""
        reason = "preemption denied: " + ", ".join(r["code"] for r in preempt_decision["reasons"])
    return [], preempt_decision, reason


def summary(decision: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "outcome": decision["outcome"],
        "reason_codes": [r["code"] for r in decision["reasons"]],
        "preemptible_victims": decision.get("constraints", {}).get("preemptible_victims", []),
        **links(decision),
    }


@DBOS.step()
def report_step(gpu_class: str, free: int, source: str) -> dict[str, Any]:
    """Record the scheduler's report that `free` GPUs of the class are free now, as a capacity of
    what running deployments hold plus that; returns the class's headroom."""
    rt = current()
    deployments = rt.store.deployments()
    used = capacity.running(gpu_class, deployments)
    rt.store.report_capacity(
        gpu_class,
        used + free,
        event_key=f"{key()}:capacity.reported:{gpu_class}",
        workflow_id=request_id(),
        detail={"free": free, "running": used, "source": source},
    )
    return capacity.headroom(gpu_class, rt.policy.fleet, rt.store.reported_capacity(), deployments)

"""The queue retry: queued deployments are placed when capacity frees, in order (tier, then FIFO),
through the PDP.

Retries run on their own queue (`capacity`, one at a time across workers), so two never spend the
same free GPUs; each placement is decided and settled inside its tenant's serialization
(pdp/lifecycle/workflows/serial.py), so it cannot spend the entitlement a concurrent request of
the tenant spends too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dbos import DBOS

from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import capacity
from pdp.lifecycle.states import DeploymentState
from pdp.lifecycle.workflows.preemption import (
    make_room,
    notify_step,
    preempt_step,
    report_step,
    settle_step,
    summary,
    target_step,
    victims_step,
)
from pdp.lifecycle.workflows.serial import in_partition
from pdp.lifecycle.workflows.steps import begin, decide_step, intent, request_id

CAPACITY_QUEUE = "capacity"
RETRY_SCHEDULE = "capacity-retry"


@DBOS.step()
def headroom_step(gpu_class: str) -> dict[str, Any]:
    rt = current()
    return capacity.headroom(gpu_class, rt.policy.fleet, rt.store.reported_capacity(), rt.store.deployments())


@DBOS.step()
def queue_step() -> list[dict[str, Any]]:
    rt = current()
    return capacity.queue_order(rt.store.tenants(), rt.store.deployments())


@DBOS.step()
def queued_spec_step(tenant: str, name: str) -> dict[str, Any] | None:
    """The deployment's spec if it is still queued."""
    for d in current().store.deployments(tenant):
        if d["name"] == name and d["state"] == DeploymentState.QUEUED:
            return dict(d["spec"])
    return None


def _hopeless(spec: dict[str, Any], tenant: str) -> tuple[dict[str, Any], int, str]:
    """(headroom, GPUs to free, reason when nothing could make room)."""
    room = headroom_step(str(spec["gpu_class"]))
    needed = capacity.gpus(spec) - int(room["free"])
    if needed > 0 and victims_step(tenant, str(spec["gpu_class"]), needed) is None:
        return (
            room,
            needed,
            f"{room['free']} GPUs free; no lower-tier deployments free {needed} of {spec['gpu_class']}",
        )
    return room, needed, ""


@DBOS.workflow()
def place_queued_workflow(tenant: str, item: dict[str, Any], actor: str, request_of: str) -> dict[str, Any]:
    """Inside the tenant's serialization: decide `deploy_model` for one queued deployment again,
    with the tenant's usage now, then place it if its GPUs are free, else preempt lower tiers as
    the capacity workflow does, else leave it queued (not notified again)."""
    begin(request_of)
    name = str(item["deployment"])
    outcome: dict[str, Any] = {"tenant": tenant, "deployment": name, "victims": [], "preempt_decisions": []}
    spec = queued_spec_step(tenant, name)  # as it is now: a scale may have changed it
    if spec is None:  # placed by a retry meanwhile, or drained by an offboarding
        return {**outcome, "status": "skipped", "reason": "no longer queued"}
    room, needed, hopeless = _hopeless(spec, tenant)
    if hopeless:
        return {**outcome, "status": "queued", "reason": hopeless}
    decision = decide_step(intent(tenant, "deploy_model", spec, actor))
    outcome["decision"] = summary(decision)
    codes = ", ".join(r["code"] for r in decision["reasons"])
    if decision["outcome"] == "DENY":
        outcome.update(status="rejected", reason="denied by policy: " + codes)
        settle_step(tenant, spec, DeploymentState.REJECTED, decision)
        notify_step(tenant, outcome, decision)
        return outcome
    if decision["outcome"] != "ALLOW":
        # A retry must not hold the whole queue waiting for a human: it stays queued.
        return {**outcome, "status": "queued", "reason": "needs approval: " + codes}
    victims: list[dict[str, Any]] = []
    preempt_decision: dict[str, Any] = {}
    # Where it goes (a multi-cluster worker): victims only there. The GPUs to free are still
    # counted per class across the fleet (the scheduler's reports are per class).
    target = target_step(tenant, spec, decision)
    if needed > 0:
        victims, preempt_decision, reason = make_room(
            tenant, str(item["tier"]), str(spec["gpu_class"]), needed, actor, outcome, target
        )
        if not victims:
            return {**outcome, "status": "queued", "reason": reason}
        preempt_step(tenant, name, victims, preempt_decision)
    settle_step(tenant, spec, DeploymentState.RUNNING, decision, target)
    placed = (
        "preempted lower-tier deployments" if victims else f"{room['free']} GPUs of {spec['gpu_class']} free"
    )
    outcome.update(status="placed", reason=placed, victims=victims)
    notify_step(tenant, outcome, preempt_decision or decision)
    return outcome


def _retry_one(item: dict[str, Any], actor: str) -> dict[str, Any]:
    tenant, name = str(item["tenant"]), str(item["deployment"])
    _, _, hopeless = _hopeless(dict(item["spec"]), tenant)
    if hopeless:
        # Nothing could make room: no decision to ask for (and none to record every minute).
        return {"tenant": tenant, "deployment": name, "victims": [], "status": "queued", "reason": hopeless}
    child = f"{request_id()}:place:{tenant}:{name}"
    return in_partition(tenant, child, place_queued_workflow, tenant, item, actor, request_id())


def _retry_queue(trigger: str, actor: str, reported: dict[str, int]) -> dict[str, Any]:
    for gpu_class, free in sorted(reported.items()):
        report_step(gpu_class, free, trigger)
    results = [_retry_one(item, actor) for item in queue_step()]
    return {
        "trigger": trigger,
        **{status: [f"{r['tenant']}/{r['deployment']}" for r in results if r["status"] == status]
           for status in ("placed", "rejected", "queued")},
        "results": results,
    }  # fmt: skip


@DBOS.workflow()
def retry_queue_workflow(trigger: str, actor: str, reported: dict[str, int] | None = None) -> dict[str, Any]:
    """Retry the queued deployments in order (tier, then FIFO): place those that fit now, leave
    the rest queued. Runs on the capacity queue, one at a time, so two retries never spend the
    same free GPUs. `reported`: free GPUs per class the scheduler reports now."""
    begin()
    return _retry_queue(trigger, actor, reported or {})


@DBOS.workflow()
def scheduled_retry_workflow(scheduled_at: datetime, context: Any) -> None:
    """The periodic retry (DBOS schedule): catches capacity that returned without an event here,
    e.g. a queued request whose tenant was suspended then reactivated, or a report of free GPUs
    beyond what the reporting request needed."""
    begin()
    _retry_queue(f"schedule {scheduled_at.isoformat()}", "system:schedule", {})


def retry_later(trigger: str) -> None:
    """Start a queue retry because capacity may have freed. From a workflow the enqueue is
    durable (a step), so a crash neither loses nor repeats it."""
    queue = DBOS.retrieve_queue(CAPACITY_QUEUE)
    if queue is not None:  # the worker always registers it; without it the schedule still retries
        queue.enqueue(retry_queue_workflow, trigger, "system")

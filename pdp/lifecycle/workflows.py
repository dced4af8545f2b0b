"""The durable workflows (DBOS Transact): onboarding, tenant requests (deploy, scale, batch size,
GPU sharing, quotas), SLA changes (re-placing running deployments), capacity exhaustion (preempt,
queue or reject) and offboarding. Deployments become workload objects through pdp/lifecycle/realize.py.

Each workflow decides through the PDP first. Steps are checkpointed, so after a crash a workflow
resumes after its last completed step; steps retry with backoff, and a provisioning step that keeps
failing runs the compensations of the steps before it (saga). Steps are also idempotent by
construction (server-side apply; audit records keyed by workflow and step), since a step that was
running when the process died runs again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dbos import DBOS

from pdp.lifecycle import anchor, audit, capacity, certificate, hooks, realize
from pdp.lifecycle.runtime import current
from pdp.lifecycle.states import DeploymentState, TenantState
from pdp.lifecycle.substrates import render_tenant
from pdp.substrate.kubernetes import objects

QUEUE = "tenant-ops"
APPROVAL_TOPIC = "approval"
RETRY: dict[str, Any] = {
    "retries_allowed": True,
    "max_attempts": 3,
    "interval_seconds": 0.2,
    "backoff_rate": 2.0,
}


def _links(decision: Mapping[str, Any]) -> dict[str, str]:
    return {
        "decision_id": str(decision.get("decision_id", "")),
        "bundle_revision": str(decision.get("bundle_revision", "")),
    }


def _wf() -> str:
    return str(DBOS.workflow_id)


# steps ------------------------------------------------------------------------------------------


@DBOS.step()
def decide_step(intent: dict[str, Any], with_usage: bool = True) -> dict[str, Any]:
    hooks.at_step("decide")
    rt = current()
    if with_usage and intent.get("tenant"):
        intent = {**intent, "usage": rt.store.usage(str(intent["tenant"]))}
    decision = rt.policy.decide(intent)
    rt.store.record(
        f"{_wf()}:decision:{intent['kind']}:{decision['decision_id']}",
        event="decision",
        tenant=str(intent.get("tenant", "")),
        actor=str(intent.get("actor", "")),
        workflow_id=_wf(),
        detail={"kind": intent["kind"], "outcome": decision["outcome"], "reasons": decision["reasons"]},
        **_links(decision),
    )
    return decision


@DBOS.step()
def transition_step(tenant: str, to: str, decision: dict[str, Any], note: str = "") -> None:
    hooks.at_step(f"transition:{to}")
    current().store.transition(
        tenant,
        to,
        event_key=f"{_wf()}:transition:{to}",
        workflow_id=_wf(),
        detail={"note": note} if note else {},
        **_links(decision),
    )


@DBOS.step()
def record_step(tenant: str, event: str, detail: dict[str, Any], decision: dict[str, Any]) -> None:
    current().store.record(
        f"{_wf()}:{event}", event=event, tenant=tenant, workflow_id=_wf(), detail=detail, **_links(decision)
    )


@DBOS.step()
def open_approval_step(tenant: str, kind: str, decision: dict[str, Any]) -> None:
    current().store.open_approval(_wf(), tenant, kind, decision)


@DBOS.step()
def resolve_approval_step(status: str, by: str) -> None:
    current().store.set_approval(_wf(), status, by, event_key=f"{_wf()}:approval.{status}")


@DBOS.step(**RETRY)
def apply_group_step(tenant: str, group: str, objs: list[dict[str, Any]], decision: dict[str, Any]) -> None:
    hooks.at_step(f"apply:{group}")
    rt = current()
    for obj in objs:
        rt.adapter.apply(obj)
    rt.store.record(
        f"{_wf()}:applied:{group}",
        event="objects.applied",
        tenant=tenant,
        workflow_id=_wf(),
        detail={"group": group, "objects": [objects.key(o) for o in objs]},
        **_links(decision),
    )


@DBOS.step(**RETRY)
def delete_group_step(tenant: str, group: str, objs: list[dict[str, Any]], reason: str) -> None:
    hooks.at_step(f"delete:{group}")
    rt = current()
    for obj in reversed(objs):
        rt.adapter.delete(obj)
    rt.store.record(
        f"{_wf()}:deleted:{group}",
        event="objects.deleted",
        tenant=tenant,
        workflow_id=_wf(),
        detail={"group": group, "reason": reason, "objects": [objects.key(o) for o in objs]},
    )


@DBOS.step(**RETRY)
def verify_step(tenant: str, objs: list[dict[str, Any]], present: bool) -> list[str]:
    """Every object present (or, for destruction, absent); raises (and so retries) otherwise."""
    hooks.at_step("verify" if present else "verify-destroyed")
    rt = current()
    wrong = [objects.key(o) for o in objs if rt.adapter.exists(o) != present]
    if wrong:
        raise RuntimeError(f"{'missing' if present else 'still present'}: {', '.join(wrong)}")
    return [objects.key(o) for o in objs]


@DBOS.step(**RETRY)
def verify_destroyed_step(tenant: str, objs: list[dict[str, Any]]) -> list[str]:
    """Every object gone, not merely being deleted: a Terminating namespace still holds its data
    until the namespace controller has emptied it, which takes seconds to minutes. Waits (and
    deletes again whatever is present and not being deleted) up to the destroy timeout per attempt,
    then fails naming what is left; records what it waited for."""
    hooks.at_step("verify-destroyed")
    rt = current()
    started = time.monotonic()
    waited_for: set[str] = set()
    while left := [o for o in objs if not rt.adapter.gone(o)]:
        waited_for.update(objects.key(o) for o in left)
        if time.monotonic() - started > rt.settings.destroy_timeout:
            keys = ", ".join(objects.key(o) for o in left)
            raise RuntimeError(f"still present after {rt.settings.destroy_timeout:.0f} s: {keys}")
        for obj in left:
            if rt.adapter.exists(obj):  # back, or its deletion was lost
                rt.adapter.delete(obj)
        time.sleep(rt.settings.destroy_poll)
    destroyed = [objects.key(o) for o in objs]
    rt.store.record(
        f"{_wf()}:objects.verified_absent",
        event="objects.verified_absent",
        tenant=tenant,
        workflow_id=_wf(),
        detail={
            "objects": destroyed,
            "waited_seconds": round(time.monotonic() - started, 1),
            "waited_for": sorted(waited_for),
        },
    )
    return destroyed


@DBOS.step(**RETRY)
def publish_step(tenant: str, policy: dict[str, Any]) -> str:
    hooks.at_step("publish")
    revision = current().policy.publish(policy)
    current().store.record(
        f"{_wf()}:policy.published:{revision}",
        event="policy.published",
        tenant=tenant,
        workflow_id=_wf(),
        bundle_revision=revision,
    )
    return revision


@DBOS.step(**RETRY)
def withdraw_step(tenant: str) -> str:
    hooks.at_step("withdraw")
    revision = current().policy.withdraw(tenant)
    current().store.record(
        f"{_wf()}:policy.withdrawn",
        event="policy.withdrawn",
        tenant=tenant,
        workflow_id=_wf(),
        bundle_revision=revision,
    )
    return revision


@DBOS.step()
def render_step(policy: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return render_tenant(current(), policy)


@DBOS.step()
def tenant_step(tenant: str) -> dict[str, Any]:
    return current().store.tenant(tenant)


# approvals --------------------------------------------------------------------------------------


def await_approval(tenant: str, kind: str, decision: dict[str, Any]) -> bool:
    """Wait for a human: one escalation after the first timeout, expiry (rejection) after the second."""
    open_approval_step(tenant, kind, decision)
    timeout = current().settings.approval_timeout
    for round_ in (1, 2):
        msg = DBOS.recv(APPROVAL_TOPIC, timeout_seconds=timeout)
        if isinstance(msg, dict):
            approved = bool(msg.get("approved"))
            resolve_approval_step("approved" if approved else "rejected", str(msg.get("by", "")))
            return approved
        if round_ == 1:
            resolve_approval_step("escalated", "system")
    resolve_approval_step("expired", "system")
    return False


# workflows --------------------------------------------------------------------------------------


@DBOS.workflow()
def onboard_workflow(policy: dict[str, Any], actor: str) -> dict[str, Any]:
    name = str(policy["name"])
    intent = {"kind": "create_tenant", "tenant": name, "actor": actor, "create_tenant": {"policy": policy}}
    decision = decide_step(intent, False)
    if decision["outcome"] == "NEEDS_APPROVAL" and not await_approval(name, "create_tenant", decision):
        transition_step(name, TenantState.FAILED, decision, "approval rejected or expired")
        return {"status": "rejected", "decision": decision}
    if decision["outcome"] == "DENY":
        transition_step(name, TenantState.FAILED, decision, "denied by policy")
        return {"status": "denied", "decision": decision}
    transition_step(name, TenantState.PROVISIONING, decision)
    rendered = render_step(policy)
    done: list[str] = []
    try:
        for group in objects.GROUPS:
            apply_group_step(name, group, rendered[group], decision)
            done.append(group)
        verify_step(name, [o for g in objects.GROUPS for o in rendered[g]], True)
        publish_step(name, policy)
    except Exception as exc:
        # Saga: undo what was applied, newest first, then mark the tenant failed.
        for group in reversed(done):
            delete_group_step(name, group, rendered[group], f"compensation: {exc}")
        transition_step(name, TenantState.FAILED, decision, f"provisioning failed: {exc}")
        return {"status": "failed", "error": str(exc), "compensated": list(reversed(done))}
    transition_step(name, TenantState.ACTIVE, decision)
    return {"status": "active", "decision": decision}


def _intent(tenant: str, kind: str, payload: dict[str, Any], actor: str) -> dict[str, Any]:
    return {"kind": kind, "tenant": tenant, "actor": actor, kind: payload}


@DBOS.step(**RETRY)
def apply_request_step(
    tenant: str, kind: str, payload: dict[str, Any], decision: dict[str, Any]
) -> dict[str, Any]:
    """Apply an allowed (or approved) request; returns what changed."""
    hooks.at_step(f"apply:{kind}")
    rt = current()
    key = f"{_wf()}:applied:{kind}"
    links = {"workflow_id": _wf(), **_links(decision)}
    if kind == "deploy_model":
        rt.store.put_deployment(
            tenant, payload["deployment"], DeploymentState.RUNNING, payload, event_key=key, **links
        )
        obj = realize.apply_workload(
            rt, tenant, payload, decision, event_key=f"{key}:workload", workflow_id=_wf()
        )
        return {
            "deployment": payload["deployment"],
            "state": DeploymentState.RUNNING,
            "object": objects.key(obj),
        }
    existing = {d["name"]: d for d in rt.store.deployments(tenant)}
    if kind in ("scale", "change_batch_size"):
        dep = existing[payload["deployment"]]
        spec = dict(dep["spec"])
        if kind == "scale":
            spec["replicas"] = payload["target_replicas"]
        else:
            spec["batch_size"] = payload["batch_size"]
        rt.store.put_deployment(tenant, dep["name"], dep["state"], spec, event_key=key, **links)
        realize.reapply_workload(
            rt, tenant, spec, dep["state"], decision, event_key=f"{key}:workload", workflow_id=_wf()
        )
        return {"deployment": dep["name"], "spec": spec}
    if kind == "request_gpu_sharing":
        isolation = decision.get("constraints", {}).get("isolation", {})
        # Shared GPUs live in other pools than whole ones: the running deployments of the class
        # (of every class when none is named) are re-placed by the workflow, one step each.
        moving = [
            d["name"]
            for d in existing.values()
            if d["state"] == DeploymentState.RUNNING
            and d["spec"].get("gpu_class") == payload.get("gpu_class", d["spec"].get("gpu_class"))
            and d["spec"].get("sharing", "none") != payload["mode"]
        ]
        rt.store.record(
            key,
            event="tenant.sharing_requested",
            tenant=tenant,
            detail={"sharing_mode": payload["mode"], "isolation": isolation, "to_replace": moving},
            **links,
        )
        return {"sharing_mode": payload["mode"], "to_replace": moving}
    if kind == "update_quotas":
        policy = {**rt.store.tenant(tenant)["policy"], "entitlements": payload["entitlements"]}
        rendered = render_tenant(rt, policy)
        for obj in rendered["quota"] + rendered["kueue"]:
            rt.adapter.apply(obj)
        revision = rt.policy.publish(policy)
        rt.store.update_policy(
            tenant, policy, event_key=key, detail={"entitlements": payload["entitlements"]}, **links
        )
        return {"entitlements": payload["entitlements"], "bundle_revision": revision}
    raise ValueError(f"unsupported request kind {kind!r}")


@DBOS.workflow()
def request_workflow(tenant: str, kind: str, payload: dict[str, Any], actor: str) -> dict[str, Any]:
    # Runs on a queue partitioned by tenant (concurrency 1), so this decision sees the usage and
    # entitlements left by the tenant's previous request: two requests cannot both overshoot.
    decision = decide_step(_intent(tenant, kind, payload, actor))
    if decision["outcome"] == "DENY":
        if kind == "deploy_model":
            record_step(tenant, "deployment.rejected", {"deployment": payload["deployment"]}, decision)
        return {"status": "denied", "reasons": [r["code"] for r in decision["reasons"]], "decision": decision}
    if decision["outcome"] == "NEEDS_APPROVAL" and not await_approval(tenant, kind, decision):
        return {"status": "rejected", "decision": decision}
    changed = apply_request_step(tenant, kind, payload, decision)
    if kind == "request_gpu_sharing":
        changed["replaced"] = [
            replace_step(tenant, name, kind, actor, str(payload["mode"]), False)
            for name in changed["to_replace"]
        ]
    record_step(tenant, "request.completed", {"kind": kind, "changed": changed}, decision)
    if kind == "scale" and int(payload["target_replicas"]) < int(payload.get("current_replicas", 0)):
        retry_later(f"scale-down of {tenant}/{payload['deployment']}")
    return {"status": "applied", "changed": changed, "decision": decision}


@DBOS.step()
def victims_step(tenant: str, gpu_class: str, needed: int) -> list[dict[str, Any]] | None:
    """The running deployments to offer as victims (spot first, then standard), or None when all
    of them together cannot free `needed` GPUs."""
    hooks.at_step("victims")
    rt = current()
    pool = capacity.candidates(tenant, gpu_class, rt.store.tenants(), rt.store.deployments())
    return capacity.enough(pool, needed)


@DBOS.step(**RETRY)
def preempt_step(
    tenant: str, deployment: str, victims: list[dict[str, Any]], decision: dict[str, Any]
) -> None:
    """Mark the victims preempted and put them back in the queue; each transition is audited
    with the preempt decision. Keyed per victim, so a re-run after a crash preempts each once."""
    hooks.at_step("preempt")
    rt = current()
    for v in victims:
        dep = next(d for d in rt.store.deployments(v["tenant"]) if d["name"] == v["workload"])
        key = f"{_wf()}:preempted:{v['tenant']}/{v['workload']}"
        links = {"actor": f"preemption for {tenant}/{deployment}", "workflow_id": _wf(), **_links(decision)}
        rt.store.put_deployment(
            v["tenant"], v["workload"], DeploymentState.PREEMPTED, dep["spec"], event_key=key, **links
        )
        realize.evict(rt, v["tenant"], dep["spec"], decision, event_key=f"{key}:evicted", workflow_id=_wf())
        # Queued at the time of preemption, so the queue retry resumes it when capacity returns.
        rt.store.put_deployment(
            v["tenant"],
            v["workload"],
            DeploymentState.QUEUED,
            dep["spec"],
            event_key=f"{key}:requeued",
            **links,
        )
        hooks.at_step(f"preempted:{v['tenant']}/{v['workload']}")


@DBOS.step(**RETRY)
def settle_step(tenant: str, payload: dict[str, Any], state: str, decision: dict[str, Any]) -> None:
    """Record the request as running (placed), queued or rejected; keyed per deployment, since
    the queue retry settles several in one workflow."""
    hooks.at_step(f"settle:{state}")
    current().store.put_deployment(
        tenant,
        payload["deployment"],
        state,
        payload,
        event_key=f"{_wf()}:settle:{tenant}/{payload['deployment']}:{state}",
        workflow_id=_wf(),
        **_links(decision),
    )
    if state == DeploymentState.RUNNING:
        key = f"{_wf()}:workload:{tenant}/{payload['deployment']}"
        realize.apply_workload(current(), tenant, payload, decision, event_key=key, workflow_id=_wf())


@DBOS.step()
def notify_step(tenant: str, outcome: dict[str, Any], decision: dict[str, Any]) -> None:
    """One `capacity.notified` record per affected tenant: the requester and each victim's tenant."""
    rt = current()
    victims = outcome.get("victims", [])
    affected = [(tenant, "requester"), *sorted({(v["tenant"], "victim") for v in victims})]
    for who, role in affected:
        rt.store.record(
            f"{_wf()}:capacity.notified:{tenant}/{outcome['deployment']}:{who}:{role}",
            event="capacity.notified",
            tenant=who,
            workflow_id=_wf(),
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
            **_links(decision),
        )


@DBOS.workflow()
def capacity_workflow(
    tenant: str, payload: dict[str, Any], needed: int, queue: bool, actor: str
) -> dict[str, Any]:
    """A deployment that cannot be placed for lack of GPUs: preempt lower tiers if the PDP allows
    it, else queue (or reject) it; notify every affected tenant."""
    name = str(payload["deployment"])
    # The scheduler's word: of what the deployment asks, all but `needed` GPUs are free now.
    report_step(
        str(payload["gpu_class"]), max(0, capacity.gpus(payload) - needed), f"exhaustion: {tenant}/{name}"
    )
    decision = decide_step(_intent(tenant, "deploy_model", payload, actor))
    codes = [r["code"] for r in decision["reasons"]]
    outcome: dict[str, Any] = {"deployment": name, "victims": [], "preempt_decisions": []}
    if decision["outcome"] == "NEEDS_APPROVAL" and not await_approval(tenant, "deploy_model", decision):
        outcome.update(status="rejected", reason="approval rejected or expired")
    elif decision["outcome"] == "DENY":
        outcome.update(status="rejected", reason="denied by policy: " + ", ".join(codes))
    if "status" in outcome:
        settle_step(tenant, payload, DeploymentState.REJECTED, decision)
        notify_step(tenant, outcome, decision)
        return {**outcome, "decision": decision}

    tier = str(tenant_step(tenant)["policy"].get("tier", ""))
    victims, preempt_decision, reason = _make_room(
        tenant, tier, str(payload["gpu_class"]), needed, actor, outcome
    )
    if victims:
        preempt_step(tenant, name, victims, preempt_decision)
        settle_step(tenant, payload, DeploymentState.RUNNING, decision)
        outcome.update(status="placed", reason="preempted lower-tier deployments", victims=victims)
        notify_step(tenant, outcome, preempt_decision)
    else:
        state = DeploymentState.QUEUED if queue else DeploymentState.REJECTED
        settle_step(tenant, payload, state, decision)
        outcome.update(status=str(state), reason=reason)
        notify_step(tenant, outcome, preempt_decision or decision)
    return {**outcome, "decision": decision}


def _make_room(
    tenant: str, tier: str, gpu_class: str, needed: int, actor: str, outcome: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """(victims the PDP allows to preempt, that decision, reason when there are none) for freeing
    `needed` GPUs of the class for the tenant; appends each preempt decision to the outcome."""
    chosen = victims_step(tenant, gpu_class, needed)
    preempt_decision: dict[str, Any] = {}
    reason = f"no running spot or standard deployments of {gpu_class} free {needed} GPUs"
    if not chosen:
        return [], preempt_decision, reason
    preempt_decision = decide_step(capacity.preempt_intent(tenant, tier, chosen, actor), False)
    outcome["preempt_decisions"].append(_summary(preempt_decision))
    if preempt_decision["outcome"] == "ALLOW":
        return chosen, preempt_decision, ""
    # All-or-nothing: try once with only the victims the PDP would allow, if they suffice.
    subset = capacity.allowed(chosen, preempt_decision)
    reason = "preemption denied: " + ", ".join(r["code"] for r in preempt_decision["reasons"])
    if subset and sum(int(v["gpus"]) for v in subset) >= needed:
        preempt_decision = decide_step(capacity.preempt_intent(tenant, tier, subset, actor), False)
        outcome["preempt_decisions"].append(_summary(preempt_decision))
        if preempt_decision["outcome"] == "ALLOW":
            return subset, preempt_decision, ""
        reason = "preemption denied: " + ", ".join(r["code"] for r in preempt_decision["reasons"])
    return [], preempt_decision, reason


def _summary(decision: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "outcome": decision["outcome"],
        "reason_codes": [r["code"] for r in decision["reasons"]],
        "preemptible_victims": decision.get("constraints", {}).get("preemptible_victims", []),
        **_links(decision),
    }


# the queue retry ---------------------------------------------------------------------------------

CAPACITY_QUEUE = "capacity"
RETRY_SCHEDULE = "capacity-retry"


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
        event_key=f"{_wf()}:capacity.reported:{gpu_class}",
        workflow_id=_wf(),
        detail={"free": free, "running": used, "source": source},
    )
    return capacity.headroom(gpu_class, rt.policy.fleet, rt.store.reported_capacity(), deployments)


@DBOS.step()
def headroom_step(gpu_class: str) -> dict[str, Any]:
    rt = current()
    return capacity.headroom(gpu_class, rt.policy.fleet, rt.store.reported_capacity(), rt.store.deployments())


@DBOS.step()
def queue_step() -> list[dict[str, Any]]:
    rt = current()
    return capacity.queue_order(rt.store.tenants(), rt.store.deployments())


@DBOS.step()
def deployment_state_step(tenant: str, name: str) -> str:
    return next((str(d["state"]) for d in current().store.deployments(tenant) if d["name"] == name), "")


def _retry_one(item: dict[str, Any], actor: str) -> dict[str, Any]:
    """Retry one queued deployment: unless nothing could make room for it, decide `deploy_model`
    again (with the tenant's usage now), then place it if its GPUs are free, else preempt lower
    tiers as the capacity workflow does, else leave it queued (not notified again)."""
    tenant, name, spec = str(item["tenant"]), str(item["deployment"]), dict(item["spec"])
    outcome: dict[str, Any] = {"tenant": tenant, "deployment": name, "victims": [], "preempt_decisions": []}
    # A queue retry triggered meanwhile, or an offboarding, may have moved it already.
    if deployment_state_step(tenant, name) != DeploymentState.QUEUED:
        return {**outcome, "status": "skipped", "reason": "no longer queued"}
    room = headroom_step(str(spec["gpu_class"]))
    needed = capacity.gpus(spec) - int(room["free"])
    if needed > 0 and victims_step(tenant, str(spec["gpu_class"]), needed) is None:
        # Nothing could make room: no decision to ask for (and none to record every minute).
        reason = f"{room['free']} GPUs free; no lower-tier deployments free {needed} of {spec['gpu_class']}"
        return {**outcome, "status": "queued", "reason": reason}
    decision = decide_step(_intent(tenant, "deploy_model", spec, actor))
    outcome["decision"] = _summary(decision)
    if decision["outcome"] == "DENY":
        outcome.update(
            status="rejected", reason="denied by policy: " + ", ".join(r["code"] for r in decision["reasons"])
        )
        settle_step(tenant, spec, DeploymentState.REJECTED, decision)
        notify_step(tenant, outcome, decision)
        return outcome
    if decision["outcome"] != "ALLOW":
        # A retry must not hold the whole queue waiting for a human: it stays queued.
        return {
            **outcome,
            "status": "queued",
            "reason": "needs approval: " + ", ".join(r["code"] for r in decision["reasons"]),
        }
    victims: list[dict[str, Any]] = []
    preempt_decision: dict[str, Any] = {}
    if needed > 0:
        victims, preempt_decision, reason = _make_room(
            tenant, str(item["tier"]), str(spec["gpu_class"]), needed, actor, outcome
        )
        if not victims:
            return {**outcome, "status": "queued", "reason": reason}
        preempt_step(tenant, name, victims, preempt_decision)
    settle_step(tenant, spec, DeploymentState.RUNNING, decision)
    outcome.update(
        status="placed",
        reason="preempted lower-tier deployments"
        if victims
        else f"{room['free']} GPUs of {spec['gpu_class']} free",
        victims=victims,
    )
    notify_step(tenant, outcome, preempt_decision or decision)
    return outcome


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
    return _retry_queue(trigger, actor, reported or {})


@DBOS.workflow()
def scheduled_retry_workflow(scheduled_at: datetime, context: Any) -> None:
    """The periodic retry (DBOS schedule): catches capacity that returned without an event here,
    e.g. a queued request whose tenant was suspended then reactivated, or a report of free GPUs
    beyond what the reporting request needed."""
    _retry_queue(f"schedule {scheduled_at.isoformat()}", "system:schedule", {})


def retry_later(trigger: str) -> None:
    """Start a queue retry because capacity may have freed. From a workflow the enqueue is
    durable (a step), so a crash neither loses nor repeats it."""
    queue = DBOS.retrieve_queue(CAPACITY_QUEUE)
    if queue is not None:  # the worker always registers it; without it the schedule still retries
        queue.enqueue(retry_queue_workflow, trigger, "system")


@DBOS.step(**RETRY)
def drain_step(tenant: str) -> list[str]:
    hooks.at_step("drain")
    rt = current()
    drained = []
    for dep in rt.store.deployments(tenant):
        # Queued ones too: a tenant being offboarded leaves the queue.
        if dep["state"] in (DeploymentState.RUNNING, DeploymentState.PREEMPTED, DeploymentState.QUEUED):
            rt.store.put_deployment(
                tenant,
                dep["name"],
                DeploymentState.DRAINED,
                dep["spec"],
                event_key=f"{_wf()}:drain:{dep['name']}",
            )
            drained.append(dep["name"])
    realize.delete_workloads(
        rt, tenant, event_key=f"{_wf()}:workload.deleted", workflow_id=_wf(), reason="drained"
    )
    return drained


@DBOS.step(**RETRY)
def revoke_tokens_step(tenant: str) -> int:
    hooks.at_step("revoke")
    revoked = current().store.revoke_tokens(tenant)
    current().store.record(
        f"{_wf()}:access.revoked",
        event="access.revoked",
        tenant=tenant,
        workflow_id=_wf(),
        detail={"tokens": revoked},
    )
    return revoked


@DBOS.step(**RETRY)
def certificate_step(tenant: str, destroyed: list[str], decision: dict[str, Any]) -> str:
    hooks.at_step("certificate")
    rt = current()
    if rt.certificate_key is None:
        raise RuntimeError("no certificate signing key: the worker loads one at start")
    cert = certificate.issue(
        tenant,
        destroyed,
        destroyed_at=datetime.now(UTC).isoformat(),
        decision=decision,
        workflow_id=_wf(),
        key=rt.certificate_key,
    )
    rt.store.put_certificate(tenant, cert["document"], cert["sha256"], cert["signature"])
    stored = rt.store.certificate(tenant)  # a re-run keeps the first certificate
    sig = stored.get("signature", {})
    rt.store.record(
        f"{_wf()}:certificate.issued",
        event="certificate.issued",
        tenant=tenant,
        workflow_id=_wf(),
        detail={"sha256": stored["sha256"], "algorithm": sig.get("algorithm"), "key_id": sig.get("key_id")},
        **_links(decision),
    )
    return str(stored["sha256"])


@DBOS.step(**RETRY)
def archive_step(tenant: str) -> str:
    hooks.at_step("archive")
    rt = current()
    rt.settings.archive_dir.mkdir(parents=True, exist_ok=True)
    path = rt.settings.archive_dir / f"{tenant}-audit.jsonl"
    # With the anchor, so the archived trail can be checked offline (`audit-verify --file`).
    path.write_text(
        anchor.export_jsonl(rt.db, rt.anchor.path, tenant, rt.certificate_key)
        if rt.anchor is not None
        else audit.export_jsonl(rt.db, tenant)
    )
    rt.store.record(
        f"{_wf()}:audit.archived",
        event="audit.archived",
        tenant=tenant,
        workflow_id=_wf(),
        detail={"path": str(path)},
    )
    return str(path)


@DBOS.workflow()
def offboard_workflow(tenant: str, actor: str, reason: str) -> dict[str, Any]:
    record = tenant_step(tenant)
    running = [d for d in current().store.deployments(tenant) if d["state"] == DeploymentState.RUNNING]
    intent = _intent(tenant, "offboard_tenant", {"active_workloads": len(running), "reason": reason}, actor)
    decision = decide_step(intent)
    if decision["outcome"] == "DENY":
        return {"status": "denied", "decision": decision}
    if decision["outcome"] == "NEEDS_APPROVAL" and not await_approval(tenant, "offboard_tenant", decision):
        return {"status": "rejected", "decision": decision}
    transition_step(tenant, TenantState.OFFBOARDING, decision)
    rendered = render_step(record["policy"])
    workloads = workloads_step(tenant)
    drain_step(tenant)
    retry_later(f"offboarding of {tenant}")  # its GPUs are free for the queue
    revoke_tokens_step(tenant)
    delete_group_step(tenant, "rbac", rendered["rbac"], "offboarding: revoke access")
    withdraw_step(tenant)
    # Data lives in the namespaces: remove everything, namespaces last, then prove it is gone.
    for group in reversed(objects.GROUPS):
        if group != "rbac":
            delete_group_step(tenant, group, rendered[group], "offboarding: destroy data")
    owned = [o for g in objects.GROUPS for o in rendered[g]] + [w["object"] for w in workloads.values()]
    destroyed = verify_destroyed_step(tenant, owned)
    digest = certificate_step(tenant, destroyed, decision)
    transition_step(tenant, TenantState.OFFBOARDED, decision)
    archive = archive_step(tenant)
    return {"status": "offboarded", "certificate_sha256": digest, "archive": archive, "decision": decision}


# re-placement and SLA changes ---------------------------------------------------------------


@DBOS.step()
def workloads_step(tenant: str) -> dict[str, dict[str, Any]]:
    return current().store.workloads(tenant)


@DBOS.step()
def running_step(tenant: str) -> list[str]:
    return [d["name"] for d in current().store.deployments(tenant) if d["state"] == DeploymentState.RUNNING]


@DBOS.step(**RETRY)
def replace_step(
    tenant: str, name: str, cause: str, actor: str, sharing: str | None, strict: bool
) -> dict[str, Any]:
    """A fresh placement decision for one running deployment; its object re-applied if it moved."""
    hooks.at_step(f"replace:{name}")
    return realize.replace(
        current(),
        tenant,
        name,
        actor=actor,
        cause=cause,
        sharing=sharing,
        strict=strict,
        event_key=f"{_wf()}:replaced:{name}",
        workflow_id=_wf(),
    )


@DBOS.step(**RETRY)
def policy_step(
    tenant: str, policy: dict[str, Any], previous: dict[str, Any], decision: dict[str, Any], note: str
) -> str:
    """The tenant's policy objects re-applied, the policy published and recorded; the revision."""
    hooks.at_step(f"apply:policy:{note}")
    return realize.apply_policy(
        current(), tenant, policy, previous, decision, event_key=f"{_wf()}:policy:{note}", workflow_id=_wf()
    )


@DBOS.step(**RETRY)
def restore_workloads_step(
    tenant: str, before: dict[str, dict[str, Any]], decision: dict[str, Any]
) -> list[str]:
    hooks.at_step("restore-workloads")
    return realize.restore_workloads(
        current(), tenant, before, decision, event_key=f"{_wf()}:restored", workflow_id=_wf()
    )


@DBOS.workflow()
def sla_workflow(tenant: str, change: dict[str, Any], actor: str) -> dict[str, Any]:
    """Change the tenant's tier and/or isolation: decide (approval when the policy asks), update
    and publish the policy, re-apply the objects that follow it, re-place every running deployment
    under the new policy, verify. A step that still fails after its retries puts the previous
    policy, objects and placements back."""
    decision = decide_step(_intent(tenant, "change_sla", change, actor))
    if decision["outcome"] == "DENY":
        return {"status": "denied", "reasons": [r["code"] for r in decision["reasons"]], "decision": decision}
    if decision["outcome"] == "NEEDS_APPROVAL" and not await_approval(tenant, "change_sla", decision):
        return {"status": "rejected", "decision": decision}
    previous = dict(tenant_step(tenant)["policy"])
    policy = {**previous, **change}
    before = workloads_step(tenant)
    replaced: list[dict[str, Any]] = []
    stage = "policy"
    try:
        revision = policy_step(tenant, policy, previous, decision, "changed")
        for name in running_step(tenant):
            stage = f"replace:{name}"
            replaced.append(replace_step(tenant, name, "change_sla", actor, None, True))
        stage = "verify"
        rendered = render_step(policy)
        now = workloads_step(tenant)
        verify_step(
            tenant,
            [o for g in objects.POLICY_GROUPS for o in rendered[g]] + [w["object"] for w in now.values()],
            True,
        )
    except Exception as exc:
        # Saga: the previous policy and objects, and every workload placed as it was.
        policy_step(tenant, previous, policy, decision, "restored")
        restored = restore_workloads_step(tenant, before, decision)
        failure = {"failed_at": stage, "error": str(exc), "restored": restored}
        record_step(tenant, "sla.compensated", failure, decision)
        return {"status": "failed", **failure, "decision": decision}
    summary = {"tier": policy.get("tier"), "isolation": policy.get("isolation"), "bundle_revision": revision}
    record_step(tenant, "sla.changed", {**summary, "replaced": replaced}, decision)
    return {"status": "applied", **summary, "replaced": replaced, "decision": decision}


def progress(steps: list[Mapping[str, Any]]) -> list[str]:
    """Step names of a workflow, for showing progress (pure)."""
    return [str(s["function_name"]).rsplit(".", 1)[-1] for s in steps]


def to_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))

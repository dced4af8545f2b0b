"""The durable workflows (DBOS Transact): onboarding, tenant requests (deploy, scale, batch size,
GPU sharing, quotas), capacity exhaustion (preempt, queue or reject) and offboarding.

Each workflow decides through the PDP first. Steps are checkpointed, so after a crash a workflow
resumes after its last completed step; steps retry with backoff, and a provisioning step that keeps
failing runs the compensations of the steps before it (saga). Steps are also idempotent by
construction (server-side apply; audit records keyed by workflow and step), since a step that was
running when the process died runs again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dbos import DBOS

from pdp.lifecycle import capacity, hooks, objects
from pdp.lifecycle.audit import export_jsonl
from pdp.lifecycle.certificate import issue
from pdp.lifecycle.runtime import current
from pdp.lifecycle.states import DeploymentState, TenantState

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
    return objects.render(policy, current().policy.fleet)


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
        return {"deployment": payload["deployment"], "state": DeploymentState.RUNNING}
    existing = {d["name"]: d for d in rt.store.deployments(tenant)}
    if kind in ("scale", "change_batch_size"):
        dep = existing[payload["deployment"]]
        spec = dict(dep["spec"])
        if kind == "scale":
            spec["replicas"] = payload["target_replicas"]
        else:
            spec["batch_size"] = payload["batch_size"]
        rt.store.put_deployment(tenant, dep["name"], dep["state"], spec, event_key=key, **links)
        return {"deployment": dep["name"], "spec": spec}
    if kind == "request_gpu_sharing":
        isolation = decision.get("constraints", {}).get("isolation", {})
        # Moving from whole GPUs to shared ones changes where workloads may run: re-place them.
        rt.store.record(
            key,
            event="tenant.replacement_required",
            tenant=tenant,
            detail={"sharing_mode": payload["mode"], "isolation": isolation},
            **links,
        )
        return {"sharing_mode": payload["mode"], "replacement": True}
    if kind == "update_quotas":
        policy = {**rt.store.tenant(tenant)["policy"], "entitlements": payload["entitlements"]}
        rendered = objects.render(policy, rt.policy.fleet)
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
    record_step(tenant, "request.completed", {"kind": kind, "changed": changed}, decision)
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
    """Mark the victims preempted; each transition is audited with the preempt decision."""
    hooks.at_step("preempt")
    rt = current()
    for v in victims:
        dep = next(d for d in rt.store.deployments(v["tenant"]) if d["name"] == v["workload"])
        rt.store.put_deployment(
            v["tenant"],
            v["workload"],
            DeploymentState.PREEMPTED,
            dep["spec"],
            event_key=f"{_wf()}:preempted:{v['tenant']}/{v['workload']}",
            actor=f"preemption for {tenant}/{deployment}",
            workflow_id=_wf(),
            **_links(decision),
        )


@DBOS.step(**RETRY)
def settle_step(tenant: str, payload: dict[str, Any], state: str, decision: dict[str, Any]) -> None:
    """Record the request as running (placed), queued or rejected."""
    hooks.at_step(f"settle:{state}")
    current().store.put_deployment(
        tenant,
        payload["deployment"],
        state,
        payload,
        event_key=f"{_wf()}:settle:{state}",
        workflow_id=_wf(),
        **_links(decision),
    )


@DBOS.step()
def notify_step(tenant: str, outcome: dict[str, Any], decision: dict[str, Any]) -> None:
    """One `capacity.notified` record per affected tenant: the requester and each victim's tenant."""
    rt = current()
    victims = outcome.get("victims", [])
    affected = [(tenant, "requester"), *sorted({(v["tenant"], "victim") for v in victims})]
    for who, role in affected:
        rt.store.record(
            f"{_wf()}:capacity.notified:{who}:{role}",
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
    chosen = victims_step(tenant, str(payload["gpu_class"]), needed)
    victims: list[dict[str, Any]] = []
    preempt_decision: dict[str, Any] = {}
    reason = f"no running spot or standard deployments of {payload['gpu_class']} free {needed} GPUs"
    if chosen:
        preempt_decision = decide_step(capacity.preempt_intent(tenant, tier, chosen, actor), False)
        outcome["preempt_decisions"].append(_summary(preempt_decision))
        if preempt_decision["outcome"] == "ALLOW":
            victims = chosen
        else:
            # All-or-nothing: try once with only the victims the PDP would allow, if they suffice.
            subset = capacity.allowed(chosen, preempt_decision)
            reason = "preemption denied: " + ", ".join(r["code"] for r in preempt_decision["reasons"])
            if subset and sum(int(v["gpus"]) for v in subset) >= needed:
                preempt_decision = decide_step(capacity.preempt_intent(tenant, tier, subset, actor), False)
                outcome["preempt_decisions"].append(_summary(preempt_decision))
                if preempt_decision["outcome"] == "ALLOW":
                    victims = subset
                else:
                    reason = "preemption denied: " + ", ".join(r["code"] for r in preempt_decision["reasons"])
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


def _summary(decision: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "outcome": decision["outcome"],
        "reason_codes": [r["code"] for r in decision["reasons"]],
        "preemptible_victims": decision.get("constraints", {}).get("preemptible_victims", []),
        **_links(decision),
    }


@DBOS.step(**RETRY)
def drain_step(tenant: str) -> list[str]:
    hooks.at_step("drain")
    rt = current()
    drained = []
    for dep in rt.store.deployments(tenant):
        if dep["state"] in (DeploymentState.RUNNING, DeploymentState.PREEMPTED):
            rt.store.put_deployment(
                tenant,
                dep["name"],
                DeploymentState.DRAINED,
                dep["spec"],
                event_key=f"{_wf()}:drain:{dep['name']}",
            )
            drained.append(dep["name"])
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
    document, digest = issue(
        tenant, destroyed, destroyed_at=datetime.now(UTC).isoformat(), decision=decision, workflow_id=_wf()
    )
    rt.store.put_certificate(tenant, document, digest)
    stored = rt.store.certificate(tenant)["sha256"]  # a re-run keeps the first certificate
    rt.store.record(
        f"{_wf()}:certificate.issued",
        event="certificate.issued",
        tenant=tenant,
        workflow_id=_wf(),
        detail={"sha256": stored},
        **_links(decision),
    )
    return str(stored)


@DBOS.step(**RETRY)
def archive_step(tenant: str) -> str:
    hooks.at_step("archive")
    rt = current()
    rt.settings.archive_dir.mkdir(parents=True, exist_ok=True)
    path = rt.settings.archive_dir / f"{tenant}-audit.jsonl"
    path.write_text(export_jsonl(rt.db, tenant))
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
    drain_step(tenant)
    revoke_tokens_step(tenant)
    delete_group_step(tenant, "rbac", rendered["rbac"], "offboarding: revoke access")
    withdraw_step(tenant)
    # Data lives in the namespaces: remove everything, namespaces last, then prove it is gone.
    for group in reversed(objects.GROUPS):
        if group != "rbac":
            delete_group_step(tenant, group, rendered[group], "offboarding: destroy data")
    destroyed = verify_step(tenant, [o for g in objects.GROUPS for o in rendered[g]], False)
    digest = certificate_step(tenant, destroyed, decision)
    transition_step(tenant, TenantState.OFFBOARDED, decision)
    archive = archive_step(tenant)
    return {"status": "offboarded", "certificate_sha256": digest, "archive": archive, "decision": decision}


def progress(steps: list[Mapping[str, Any]]) -> list[str]:
    """Step names of a workflow, for showing progress (pure)."""
    return [str(s["function_name"]).rsplit(".", 1)[-1] for s in steps]


def to_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))

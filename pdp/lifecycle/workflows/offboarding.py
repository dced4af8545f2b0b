"""Offboarding: drain, revoke access, withdraw the policy, destroy every object (namespaces, the
data, last), prove them gone, certify and archive.

Offboarding is never held up by an approval of another request: it waits for no tenant
serialization but for the short changes already in it, starts there (the tenant becomes
`offboarding` and its deployments are drained, so every later change of the tenant finds it
superseded), then answers every open approval of the tenant as superseded (audited on both
sides) and destroys outside the serialization.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from dbos import DBOS

from pdp.integrity.files import private_file
from pdp.lifecycle import clusters as fleet_clusters
from pdp.lifecycle import test_faults
from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import certificate, cluster_reach, pools, realize
from pdp.lifecycle.states import DeploymentState, TenantState
from pdp.lifecycle.storage import anchor, audit
from pdp.lifecycle.workflows import approvals
from pdp.lifecycle.workflows.queue_retry import retry_later
from pdp.lifecycle.workflows.serial import in_partition
from pdp.lifecycle.workflows.steps import (
    RETRY,
    begin,
    decide_step,
    delete_group_step,
    intent,
    key,
    links,
    render_step,
    request_id,
    tenant_step,
    transition_step,
    workloads_step,
)
from pdp.substrate import tenant_objects
from pdp.substrate.base import Adapter
from pdp.substrate.kubernetes import objects


@DBOS.step(**RETRY)
def verify_destroyed_step(tenant: str, owned: list[dict[str, Any]], decision: dict[str, Any]) -> list[str]:
    """Every object ({"cluster", "object"}) gone from its cluster, not merely being deleted: a
    Terminating namespace still holds its data until the namespace controller has emptied it,
    which takes seconds to minutes. Waits (and deletes again whatever is present and not being
    deleted) up to the destroy timeout per attempt, then fails naming what is left; an unreachable
    cluster is waited for, never skipped. Records what it waited for; returns each object's key
    with its cluster."""
    test_faults.at_step("verify-destroyed")
    rt = current()
    started = time.monotonic()
    waited_for: set[str] = set()
    decided = links(decision)["decision_id"]

    def named(entry: dict[str, Any]) -> str:
        return fleet_clusters.label(str(entry["cluster"]), objects.key(entry["object"]))

    def gone(entry: dict[str, Any]) -> bool:
        obj = entry["object"]
        return bool(
            cluster_reach.reach(
                rt, str(entry["cluster"]), "verify destroyed", lambda a: a.gone(obj),
                tenant=tenant, event_key=key(), workflow_id=request_id(), decision_id=decided,
            )
        )  # fmt: skip

    def delete_again(entry: dict[str, Any]) -> None:
        obj = entry["object"]

        def again(adapter: Adapter) -> None:
            if adapter.exists(obj):  # back, or its deletion was lost
                adapter.delete(obj)

        cluster_reach.reach(
            rt,
            str(entry["cluster"]),
            "delete again",
            again,
            tenant=tenant,
            event_key=key(),
            workflow_id=request_id(),
            decision_id=decided,
        )

    resumed = rt.clusters.resumed
    while left := [e for e in owned if not gone(e)]:
        waited_for.update(named(e) for e in left)
        if rt.clusters.resumed != resumed:  # a cluster was away: its absence does not count
            resumed, started = rt.clusters.resumed, time.monotonic()
        if time.monotonic() - started > rt.settings.destroy_timeout:
            keys = ", ".join(named(e) for e in left)
            raise RuntimeError(f"still present after {rt.settings.destroy_timeout:.0f} s: {keys}")
        for entry in left:
            delete_again(entry)
        time.sleep(rt.settings.destroy_poll)
    destroyed = [named(e) for e in owned]
    rt.store.record(
        f"{key()}:objects.verified_absent",
        event="objects.verified_absent",
        tenant=tenant,
        workflow_id=request_id(),
        detail={
            "objects": destroyed,
            "waited_seconds": round(time.monotonic() - started, 1),
            "waited_for": sorted(waited_for),
            "mode": rt.adapter.mode,
        },
        **links(decision),
    )
    return destroyed


@DBOS.step()
def every_cluster_step() -> list[str]:
    return current().clusters.names()


@DBOS.step(**RETRY)
def withdraw_step(tenant: str, decision: dict[str, Any]) -> str:
    test_faults.at_step("withdraw")
    revision = current().policy.withdraw(tenant)
    current().store.record(
        f"{key()}:policy.withdrawn",
        event="policy.withdrawn",
        tenant=tenant,
        workflow_id=request_id(),
        decision_id=links(decision)["decision_id"],
        bundle_revision=revision,  # the bundle without the tenant, not the one that decided
    )
    return revision


@DBOS.step(**RETRY)
def drain_step(tenant: str, decision: dict[str, Any]) -> list[str]:
    test_faults.at_step("drain")
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
                event_key=f"{key()}:drain:{dep['name']}",
                workflow_id=request_id(),
                **links(decision),
            )
            drained.append(dep["name"])
    realize.delete_workloads(
        rt, tenant, event_key=f"{key()}:workload.deleted", workflow_id=request_id(), reason="drained",
        **links(decision),
    )  # fmt: skip
    return drained


@DBOS.step(**RETRY)
def revoke_tokens_step(tenant: str, decision: dict[str, Any]) -> int:
    test_faults.at_step("revoke")
    revoked = current().store.revoke_tokens(tenant, workflow_id=request_id(), **links(decision))
    current().store.record(
        f"{key()}:access.revoked",
        event="access.revoked",
        tenant=tenant,
        workflow_id=request_id(),
        detail={"tokens": revoked},
        **links(decision),
    )
    return revoked


@DBOS.step(**RETRY)
def certificate_step(tenant: str, destroyed: list[str], decision: dict[str, Any]) -> str:
    test_faults.at_step("certificate")
    rt = current()
    if rt.certificate_key is None:
        raise RuntimeError("no certificate signing key: the worker loads one at start")
    cert = certificate.issue(
        tenant,
        destroyed,
        destroyed_at=datetime.now(UTC).isoformat(),
        decision=decision,
        workflow_id=request_id(),
        key=rt.certificate_key,
        mode=rt.adapter.mode,  # a dry run's certificate says so
    )
    rt.store.put_certificate(tenant, cert["document"], cert["sha256"], cert["signature"])
    stored = rt.store.certificate(tenant)  # a re-run keeps the first certificate
    sig = stored.get("signature", {})
    rt.store.record(
        f"{key()}:certificate.issued",
        event="certificate.issued",
        tenant=tenant,
        workflow_id=request_id(),
        detail={"sha256": stored["sha256"], "algorithm": sig.get("algorithm"), "key_id": sig.get("key_id")},
        **links(decision),
    )
    return str(stored["sha256"])


@DBOS.step(**RETRY)
def archive_step(tenant: str, decision: dict[str, Any]) -> str:
    test_faults.at_step("archive")
    rt = current()
    path = private_file(rt.settings.archive_dir / f"{tenant}-audit.jsonl")  # a tenant's trail: 0600
    # Sealed, so the archived trail can be checked offline (`audit-verify --file`).
    path.write_text(
        anchor.export_jsonl(rt.db, tenant, rt.certificate_key)
        if rt.anchor is not None
        else audit.export_jsonl(rt.db, tenant)
    )
    rt.store.record(
        f"{key()}:audit.archived",
        event="audit.archived",
        tenant=tenant,
        workflow_id=request_id(),
        detail={"path": str(path)},
        **links(decision),
    )
    return str(path)


@DBOS.step()
def active_workloads_step(tenant: str) -> int:
    return sum(1 for d in current().store.deployments(tenant) if d["state"] == DeploymentState.RUNNING)


@DBOS.workflow()
def offboard_begin_workflow(tenant: str, decision: dict[str, Any], request_of: str) -> dict[str, Any]:
    """Inside the tenant's serialization: the tenant becomes `offboarding` and its deployments are
    drained (their workload objects deleted); returns the workload objects there were."""
    begin(request_of)
    transition_step(tenant, TenantState.OFFBOARDING, decision)
    workloads = workloads_step(tenant)
    drained = drain_step(tenant, decision)
    retry_later(f"offboarding of {tenant}")  # its GPUs are free for the queue
    return {"status": "offboarding", "workloads": workloads, "drained": drained}


@DBOS.workflow()
def offboard_workflow(tenant: str, actor: str, reason: str) -> dict[str, Any]:
    begin()
    record = tenant_step(tenant)
    payload = {"active_workloads": active_workloads_step(tenant), "reason": reason}
    decision = decide_step(intent(tenant, "offboard_tenant", payload, actor))
    if decision["outcome"] == "DENY":
        approvals.publish("denied", decision)
        return {"status": "denied", "decision": decision}
    if decision["outcome"] == "NEEDS_APPROVAL":
        answer = approvals.await_approval(tenant, "offboard_tenant", decision)
        if answer != "approved":
            approvals.publish("rejected", decision, approval=answer)
            return {"status": "rejected", "approval": answer, "decision": decision}
    approvals.publish("offboarding", decision)
    begun = in_partition(
        tenant, f"{request_id()}:begin", offboard_begin_workflow, tenant, decision, request_id()
    )
    # After the transition: an approval opening from now on finds the tenant offboarding.
    superseded = approvals.supersede(tenant, request_id(), decision)
    rendered = render_step(record["policy"])
    revoke_tokens_step(tenant, decision)
    delete_group_step(tenant, "rbac", rendered["rbac"], "offboarding: revoke access", decision)
    withdraw_step(tenant, decision)
    pools.release(tenant, "offboarding", decision)  # its dedicated pool's nodes return to shared capacity
    # Data lives in the namespaces: remove everything, namespaces last, then prove it is gone.
    for group in reversed(tenant_objects.GROUPS):
        if group != "rbac":
            delete_group_step(tenant, group, rendered[group], "offboarding: destroy data", decision)
    # In every cluster (the tenant's, and any other: nothing of it may be left anywhere), and each
    # workload object in the cluster it ran in.
    owned = [
        {"cluster": c, "object": o}
        for c in every_cluster_step()
        for g in tenant_objects.GROUPS
        for o in rendered[g]
    ]
    owned += [{"cluster": realize.cluster_of(w), "object": w["object"]} for w in begun["workloads"].values()]
    destroyed = verify_destroyed_step(tenant, owned, decision)
    digest = certificate_step(tenant, destroyed, decision)
    transition_step(tenant, TenantState.OFFBOARDED, decision)
    archive = archive_step(tenant, decision)
    approvals.publish("offboarded", decision)
    return {
        "status": "offboarded",
        "certificate_sha256": digest,
        "archive": archive,
        "superseded": superseded,
        "decision": decision,
    }

"""Steps shared by the workflows: decide, record, transition, apply and delete objects, publish.

Steps are checkpointed: after a crash a workflow resumes after its last completed step, and a step
that was running when the process died runs again, so each is idempotent by construction
(server-side apply; audit records keyed by the workflow and step that wrote them).

A request may run as several workflows (the request, and the changes it makes inside the tenant's
serialization: pdp/lifecycle/workflows/serial.py). Event keys use the id of the workflow that
writes them (unique per execution); audit records name the request, so a request's whole trail
carries one workflow id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from functools import partial
from typing import Any

from dbos import DBOS

from pdp.lifecycle import clusters as fleet_clusters
from pdp.lifecycle import test_faults
from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import cluster_reach, realize, replacement
from pdp.lifecycle.services.substrates import render_tenant
from pdp.substrate.base import Adapter
from pdp.substrate.kubernetes import objects

RETRY: dict[str, Any] = {
    "retries_allowed": True,
    "max_attempts": 3,
    "interval_seconds": 0.2,
    "backoff_rate": 2.0,
}

# The request the running workflow works for (set by every workflow as it starts; steps run in
# the workflow's thread and context).
_REQUEST: ContextVar[str] = ContextVar("gpupaas_lifecycle_request", default="")


def begin(request: str | None = None) -> str:
    """Called first by every workflow: `request`, the id of the request it works for (its own
    id when it is the request)."""
    rid = request or str(DBOS.workflow_id)
    _REQUEST.set(rid)
    return rid


def request_id() -> str:
    return _REQUEST.get() or str(DBOS.workflow_id)


def key() -> str:
    """The prefix of the event keys this workflow writes."""
    return str(DBOS.workflow_id)


def links(decision: Mapping[str, Any]) -> dict[str, str]:
    return {
        "decision_id": str(decision.get("decision_id", "")),
        "bundle_revision": str(decision.get("bundle_revision", "")),
    }


def intent(tenant: str, kind: str, payload: dict[str, Any], actor: str) -> dict[str, Any]:
    return {"kind": kind, "tenant": tenant, "actor": actor, kind: payload}


def record_decision(intent: Mapping[str, Any], decision: Mapping[str, Any], **extra: Any) -> None:
    """The `decision` audit record: outcome, reasons and the figures it was decided on (the usage
    and the request as the PDP saw them)."""
    kind = str(intent["kind"])
    detail: dict[str, Any] = {"kind": kind, "outcome": decision["outcome"], "reasons": decision["reasons"]}
    if "usage" in intent:
        detail["usage"] = dict(intent["usage"])
    if kind in intent and kind != "create_tenant":
        detail["payload"] = dict(intent[kind])
    current().store.record(
        f"{key()}:decision:{kind}:{decision['decision_id']}",
        event="decision",
        tenant=str(intent.get("tenant", "")),
        actor=str(intent.get("actor", "")),
        workflow_id=request_id(),
        detail={**detail, **extra},
        **links(decision),
    )


@DBOS.step()
def decide_step(intent: dict[str, Any], with_usage: bool = True) -> dict[str, Any]:
    test_faults.at_step("decide")
    rt = current()
    if with_usage and intent.get("tenant"):
        intent = {**intent, "usage": rt.store.usage(str(intent["tenant"]))}
    decision = rt.policy.decide(intent)
    record_decision(intent, decision)
    return decision


@DBOS.step()
def transition_step(tenant: str, to: str, decision: dict[str, Any], note: str = "") -> None:
    test_faults.at_step(f"transition:{to}")
    current().store.transition(
        tenant,
        to,
        event_key=f"{key()}:transition:{to}",
        workflow_id=request_id(),
        detail={"note": note} if note else {},
        **links(decision),
    )


@DBOS.step()
def record_step(tenant: str, event: str, detail: dict[str, Any], decision: dict[str, Any]) -> None:
    current().store.record(
        f"{key()}:{event}",
        event=event,
        tenant=tenant,
        workflow_id=request_id(),
        detail=detail,
        **links(decision),
    )


def _each(
    tenant: str,
    clusters: list[str],
    operation: str,
    call: Callable[[str, Adapter], Any],
    decision: Mapping[str, Any],
) -> None:
    """`call(cluster, adapter)` in each cluster, waiting for any that is unreachable; for
    `decision` (its pause records name it)."""
    rt = current()
    for cluster in clusters:
        cluster_reach.reach(
            rt,
            cluster,
            operation,
            partial(call, cluster),
            tenant=tenant,
            event_key=key(),
            workflow_id=request_id(),
            decision_id=links(decision)["decision_id"],
        )


def _where(clusters: list[str]) -> dict[str, Any]:
    return {"clusters": clusters} if clusters != [fleet_clusters.SINGLE] else {}


@DBOS.step()
def clusters_step(tenant: str, decision: dict[str, Any]) -> list[str]:
    """The clusters an onboarding realizes the tenant in: those of the decision's eligible
    clusters this worker reaches (one adapter standing for all when it manages none), recorded."""
    rt = current()
    eligible = [str(c) for c in decision.get("constraints", {}).get("eligible_clusters", [])]
    chosen = rt.clusters.among(eligible)
    if not rt.clusters.managed:
        return chosen
    if not chosen:
        raise RuntimeError(
            f"tenant {tenant!r}: its policy allows clusters {eligible}, none of which this worker reaches"
        )
    rt.store.put_clusters(
        tenant,
        chosen,
        event_key=f"{key()}:tenant.clusters",
        workflow_id=request_id(),
        detail={"clusters": chosen, "eligible": eligible,
                "not_realized_in": sorted(set(rt.clusters.names()) - set(chosen))},
        **links(decision),
    )  # fmt: skip
    return chosen


@DBOS.step(**RETRY)
def apply_group_step(
    tenant: str,
    group: str,
    objs: list[dict[str, Any]],
    decision: dict[str, Any],
    clusters: list[str] | None = None,
) -> None:
    """Apply a group of the tenant's objects in each of `clusters` (default: the tenant's)."""
    test_faults.at_step(f"apply:{group}")
    rt = current()
    where = clusters if clusters is not None else cluster_reach.of_tenant(rt, tenant)

    def apply(_: str, adapter: Adapter) -> None:
        for obj in objs:
            adapter.apply(obj)

    _each(tenant, where, f"apply {group}", apply, decision)
    rt.store.record(
        f"{key()}:applied:{group}",
        event="objects.applied",
        tenant=tenant,
        workflow_id=request_id(),
        detail={"group": group, "objects": [objects.key(o) for o in objs], **_where(where)},
        **links(decision),
    )


@DBOS.step(**RETRY)
def delete_group_step(
    tenant: str,
    group: str,
    objs: list[dict[str, Any]],
    reason: str,
    decision: dict[str, Any],
    clusters: list[str] | None = None,
) -> None:
    """Delete a group of the tenant's objects in each of `clusters` (default: every cluster), for
    `decision` (the offboarding's, or the onboarding's being compensated)."""
    test_faults.at_step(f"delete:{group}")
    rt = current()
    where = clusters if clusters is not None else rt.clusters.names()

    def delete(_: str, adapter: Adapter) -> None:
        for obj in reversed(objs):
            adapter.delete(obj)

    _each(tenant, where, f"delete {group}", delete, decision)
    rt.store.record(
        f"{key()}:deleted:{group}",
        event="objects.deleted",
        tenant=tenant,
        workflow_id=request_id(),
        detail={"group": group, "reason": reason, "objects": [objects.key(o) for o in objs], **_where(where)},
        **links(decision),
    )


@DBOS.step(**RETRY)
def verify_step(
    tenant: str,
    objs: list[dict[str, Any]],
    present: bool,
    decision: dict[str, Any],
    clusters: list[str] | None = None,
) -> list[str]:
    """Every object present in each of `clusters` (default: the tenant's); raises (and so
    retries) otherwise. `decision`: the one its workflow applied them for."""
    test_faults.at_step("verify" if present else "verify-destroyed")
    rt = current()
    where = clusters if clusters is not None else cluster_reach.of_tenant(rt, tenant)
    wrong: list[str] = []

    def check(cluster: str, adapter: Adapter) -> None:
        wrong.extend(
            fleet_clusters.label(cluster, objects.key(o)) for o in objs if adapter.exists(o) != present
        )

    _each(tenant, where, "verify", check, decision)
    if wrong:
        raise RuntimeError(f"{'missing' if present else 'still present'}: {', '.join(wrong)}")
    return [fleet_clusters.label(c, objects.key(o)) for c in where for o in objs]


def _exists(obj: dict[str, Any], adapter: Adapter) -> bool:
    return adapter.exists(obj)


@DBOS.step(**RETRY)
def verify_workloads_step(
    tenant: str, workloads: dict[str, dict[str, Any]], decision: dict[str, Any]
) -> list[str]:
    """Every workload object present in the cluster it was placed in; raises otherwise.
    `decision`: the one its workflow placed them for."""
    test_faults.at_step("verify-workloads")
    rt = current()
    wrong: list[str] = []
    for kept in workloads.values():
        cluster = realize.cluster_of(kept)
        obj = kept["object"]
        present = cluster_reach.reach(
            rt, cluster, "verify workload", partial(_exists, obj),
            tenant=tenant, event_key=key(), workflow_id=request_id(),
            decision_id=links(decision)["decision_id"],
        )  # fmt: skip
        if not present:
            wrong.append(fleet_clusters.label(cluster, objects.key(obj)))
    if wrong:
        raise RuntimeError(f"missing: {', '.join(wrong)}")
    return [fleet_clusters.label(realize.cluster_of(k), objects.key(k["object"])) for k in workloads.values()]


@DBOS.step(**RETRY)
def publish_step(tenant: str, policy: dict[str, Any], decision: dict[str, Any]) -> str:
    """The tenant's policy published under `decision` (the record names it; its bundle revision is
    the new one)."""
    test_faults.at_step("publish")
    revision = current().policy.publish(policy)
    current().store.record(
        f"{key()}:policy.published:{revision}",
        event="policy.published",
        tenant=tenant,
        workflow_id=request_id(),
        decision_id=str(decision.get("decision_id", "")),
        bundle_revision=revision,
    )
    return revision


@DBOS.step()
def render_step(policy: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    return render_tenant(current(), policy)


@DBOS.step()
def tenant_step(tenant: str) -> dict[str, Any]:
    return current().store.tenant(tenant)


@DBOS.step()
def workloads_step(tenant: str) -> dict[str, dict[str, Any]]:
    return current().store.workloads(tenant)


@DBOS.step(**RETRY)
def replace_step(
    tenant: str, name: str, cause: str, actor: str, sharing: str | None, strict: bool
) -> dict[str, Any]:
    """A fresh placement decision for one running deployment; its object re-applied if it moved."""
    test_faults.at_step(f"replace:{name}")
    return replacement.replace(
        current(),
        tenant,
        name,
        actor=actor,
        cause=cause,
        sharing=sharing,
        strict=strict,
        event_key=f"{key()}:replaced:{name}",
        workflow_id=request_id(),
    )


def progress(steps: list[Mapping[str, Any]]) -> list[str]:
    """Step names of a workflow, for showing progress (pure)."""
    return [str(s["function_name"]).rsplit(".", 1)[-1] for s in steps]

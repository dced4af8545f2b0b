"""Incident response: a GPU or node fault takes its node out of service until an operator resolves it.

open (audited) -> cordon and taint the node -> find the deployments the fault affects -> the
degradation policy's plan (policies/gpupaas/degradation: when the capacity left is short, spot
preempted first, standard scaled toward its minimum, with the victims' tenants' consent checked by
the preempt intent; the order the others are re-placed in, highest tier first) -> re-place them,
tenant by tenant in that order, each tenant's inside its serialization
(pdp/lifecycle/workflows/serial.py), by a fresh PDP placement decision under the policy in force
(residency and isolation as the policy says) -> notify each affected tenant -> record each one's
SLA impact (GPU-minutes) -> wait for the operator's resolution -> release the node (untaint,
uncordon) -> closed.

Each effect happens once across crashes: every step is checkpointed and keyed (the node applied by
server-side apply, so a step re-run after a kill -9 applies the same object; audit records keyed by
workflow and step); the re-placement of a tenant's deployments is a child workflow with a fixed
id, awaited again, not started again, after a restart.
"""

from __future__ import annotations

import time
from typing import Any

from dbos import DBOS

from pdp.lifecycle import test_faults
from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import capacity, cluster_reach, degradation, incidents, replacement
from pdp.lifecycle.workflows.preemption import preempt_step
from pdp.lifecycle.workflows.serial import in_partition
from pdp.lifecycle.workflows.steps import RETRY, begin, decide_step, key, links, record_decision, request_id
from pdp.substrate.base import Adapter
from pdp.substrate.kubernetes import cordon

RESOLVE_TOPIC = "incident.resolve"
INCIDENT_EVENT = "incident"
# How long one wait for the operator's resolution lasts before waiting again (each is checkpointed).
RESOLVE_WAIT = 3600.0


def _undecided() -> str:
    return f"incident {request_id()} acts on the node for a fault report, not a PDP decision"


def _record(event: str, tenant: str, detail: dict[str, Any], suffix: str = "") -> None:
    """A record of the incident's own steps. No PDP decision takes a faulty node out of service
    (the re-placements and degradations record theirs): the record says so where a decision id
    would stand, as the records of its cluster calls do."""
    current().store.record(
        f"{key()}:{event}{suffix}", event=event, tenant=tenant, workflow_id=request_id(),
        detail={**detail, "decision": f"none: {_undecided()}"},
    )  # fmt: skip


def _on_node(node: str, call: Any) -> Any:
    """`call(adapter)` on the adapter of the node's cluster, waiting while it is unreachable.
    No PDP decision takes a faulty node out of service: the records of its pauses say so."""
    rt = current()
    return cluster_reach.reach(
        rt, incidents.cluster_of_node(rt, node), f"incident on node {node}", call,
        tenant="", event_key=key(), workflow_id=request_id(), decision_id="",
        undecided=_undecided(),
    )  # fmt: skip


@DBOS.step()
def opened_step(node: str, fault: dict[str, Any], actor: str) -> float:
    """The incident opened (audited); the time it opened, from which the SLA impact counts."""
    opened_at = time.time()
    _record("incident.opened", "", {"node": node, "fault": fault, "actor": actor, "opened_at": opened_at})
    return opened_at


@DBOS.step(**RETRY)
def node_step(node: str) -> dict[str, Any]:
    """The node's taints and unschedulable flag before the incident touches it (checkpointed
    before the cordon, so a cordon re-run after a crash never takes its own cordon for the
    operator's)."""
    now = _on_node(node, lambda adapter: incidents.read_node(adapter, node))
    return {**now, "taints": cordon.others(now["taints"])}


@DBOS.step(**RETRY)
def cordon_step(node: str, cause: str, before: dict[str, Any]) -> None:
    """The node unschedulable and tainted NoExecute (the taints it has now kept)."""
    test_faults.at_step("incident:cordon")

    def take_out(adapter: Adapter) -> None:
        incidents.apply_node(adapter, cordon.cordon(node, incidents.read_node(adapter, node), cause))

    _on_node(node, take_out)
    test_faults.at_step("incident:cordoned")  # applied, not yet recorded: a re-run applies it again
    _record("node.cordoned", "", {"node": node, "taint": cordon.incident_taint(cause), "before": before})


@DBOS.step()
def affected_step(node: str, pods: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The running deployments the fault affects (by tenant and name)."""
    test_faults.at_step("incident:affected")
    on_node = _on_node(node, lambda adapter: adapter.occupancy([node]).get(node, []))
    return incidents.affected(current(), on_node, pods)


@DBOS.step()
def incident_degrade_step(
    node: str, hit: list[dict[str, Any]], actor: str, incident: str
) -> list[dict[str, Any]]:
    """The degradation policy's decision for each GPU class the fault hit (recorded, with the
    incident as its cause)."""
    test_faults.at_step("incident:degrade")
    rt = current()
    decisions = []
    for asked in incidents.degrade_intents(rt, node, hit, actor):
        decision = rt.policy.decide(asked)
        record_decision(asked, decision, cause=f"incident {incident}")
        decisions.append(decision)
    return decisions


@DBOS.step()
def degraded_step(tenant: str, node: str, taken: list[dict[str, Any]], decision: dict[str, Any]) -> None:
    """The tenant told (in its own trail) which of its deployments gave GPUs for the incident, and
    how (preempted and queued, or scaled down), with the preempt decision that allowed it."""
    detail = {
        "incident": request_id(), "node": node,
        "deployments": [
            {"deployment": v["workload"], "action": v["action"], "to_replicas": v["to_replicas"],
             "gpus": v["gpus"]}
            for v in taken
        ],
    }  # fmt: skip
    current().store.record(
        f"{key()}:incident.degraded:{tenant}", event="incident.degraded", tenant=tenant,
        workflow_id=request_id(), detail=detail, **links(decision),
    )  # fmt: skip


def degrade(
    node: str, hit: list[dict[str, Any]], actor: str, incident: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the affected deployments to re-place, in the plans' order; what was degraded): each plan's
    steps offered to the preempt intent of the highest-tier tenant the room is for, the ones it
    allows preempted or scaled down."""
    order: list[dict[str, Any]] = []
    degraded: list[dict[str, Any]] = []
    for decision in incident_degrade_step(node, hit, actor, incident):
        plan = degradation.plan(decision)
        if plan is None:  # denied: re-placed as found, nothing degraded
            order += [{"tenant": h["tenant"], "deployment": h["deployment"]} for h in hit]
            continue
        order += plan["replace_order"]
        victims = degradation.victims(plan["steps"])
        if not victims or not plan["replace_order"]:
            continue
        top = plan["replace_order"][0]
        asked = capacity.preempt_intent(str(top["tenant"]), str(top["tier"]), victims, actor)
        allowed = decide_step(asked, False)
        taken = victims if allowed["outcome"] == "ALLOW" else capacity.allowed(victims, allowed)
        if taken:
            preempt_step(str(top["tenant"]), f"incident {incident}", taken, allowed)
            for tenant in sorted({str(v["tenant"]) for v in taken}):
                degraded_step(tenant, node, [v for v in taken if v["tenant"] == tenant], allowed)
            gone = {(v["tenant"], v["workload"]) for v in taken if v["action"] == "preempt"}
            order = [o for o in order if (o["tenant"], o["deployment"]) not in gone]
        degraded.append({
            "gpu_class": plan["gpu_class"], "short_gpus": plan["short_gpus"],
            "decision_id": decision["decision_id"], "preempt_decision_id": allowed["decision_id"],
            "outcome": allowed["outcome"], "taken": taken,
        })  # fmt: skip
    unique: dict[tuple[str, str], dict[str, Any]] = {}
    for o in order:
        unique.setdefault((str(o["tenant"]), str(o["deployment"])), o)
    return incidents.in_plan_order(hit, list(unique.values())), degraded


@DBOS.step(**RETRY)
def incident_replace_step(tenant: str, name: str, incident: str, actor: str) -> dict[str, Any]:
    """A fresh placement decision for one affected deployment, its object re-applied if it moved."""
    test_faults.at_step(f"incident:replace:{name}")
    out = replacement.replace(
        current(), tenant, name, actor=actor, cause=f"incident {incident}", sharing=None, strict=False,
        event_key=f"{key()}:replaced:{name}", workflow_id=request_id(),
    )  # fmt: skip
    return {**out, "at": time.time()}


@DBOS.workflow()
def incident_replace_workflow(
    tenant: str, names: list[str], incident: str, actor: str, grant: dict[str, Any], request_of: str
) -> dict[str, Any]:
    """Inside the tenant's serialization: re-place its affected deployments one by one."""
    begin(request_of)
    replaced = [incident_replace_step(tenant, name, incident, actor) for name in names]
    return {"status": "replaced", "tenant": tenant, "replaced": replaced}


@DBOS.step()
def incident_notify_step(
    tenant: str, node: str, fault: dict[str, Any], outcome: dict[str, Any], tier: str = ""
) -> None:
    """The tenant told (an audited notification in its own trail): which of its deployments the
    fault hit and how each was re-placed, and its tier then (the order re-placements went in).
    Never another tenant's pods."""
    seen = {k: fault[k] for k in ("cause", "xids", "gpus") if k in fault}
    detail = {
        "incident": request_id(), "node": node, "fault": seen, "tier": tier, "replaced": outcome["replaced"],
    }  # fmt: skip
    _record("incident.notified", tenant, detail, f":{tenant}")


@DBOS.step()
def impact_step(tenant: str, node: str, impact: dict[str, Any]) -> None:
    _record("incident.sla_impact", tenant, {"incident": request_id(), "node": node, **impact}, f":{tenant}")


@DBOS.step(**RETRY)
def incident_release_step(
    node: str, before: dict[str, Any], resolution: dict[str, Any], opened_at: float
) -> None:
    """The incident taint removed and the node schedulable again (unless it was cordoned before)."""
    test_faults.at_step("incident:release")

    def give_back(adapter: Adapter) -> None:
        now = incidents.read_node(adapter, node)
        incidents.apply_node(adapter, cordon.release(node, now, bool(before.get("unschedulable"))))

    _on_node(node, give_back)
    detail = {
        "node": node,
        "resolved_by": resolution.get("by", ""),
        "comment": resolution.get("comment", ""),
        "out_of_service_minutes": round((time.time() - opened_at) / 60, 3),
    }
    _record("node.released", "", detail)


def _publish(summary: dict[str, Any]) -> None:
    DBOS.set_event(INCIDENT_EVENT, summary)


@DBOS.workflow()
def incident_workflow(node: str, fault: dict[str, Any], actor: str) -> dict[str, Any]:
    """`fault`: {cause, xid?, gpus?, pods?}: what was seen (the pods as dcgm-exporter labels the
    faulty GPUs' series). Ends when an operator resolves the incident (RESOLVE_TOPIC)."""
    incident = begin()
    cause = str(fault.get("cause") or "fault")
    summary: dict[str, Any] = {"incident": incident, "node": node, "fault": fault, "state": "open"}
    opened_at = opened_step(node, fault, actor)
    summary["opened_at"] = opened_at
    _publish(summary)
    before = node_step(node)
    cordon_step(node, cause, before)
    summary["state"] = "cordoned"
    _publish(summary)
    found = affected_step(node, list(fault.get("pods") or []))
    hit, degraded = degrade(node, found, actor, incident)
    summary["affected"] = hit
    summary["degraded"] = degraded
    tenants: dict[str, Any] = {}
    for tenant, deployments in incidents.by_tenant(hit):
        names = [d["deployment"] for d in deployments]
        outcome = in_partition(
            tenant, f"{incident}:replace-{tenant}", incident_replace_workflow,
            tenant, names, incident, actor, {}, incident,
        )  # fmt: skip
        incident_notify_step(tenant, node, fault, outcome, str(deployments[0]["tier"]))
        replaced_at = max((r["at"] for r in outcome["replaced"]), default=opened_at)
        cost = incidents.impact(deployments, opened_at, replaced_at)
        impact_step(tenant, node, cost)
        tenants[tenant] = {"replaced": outcome["replaced"], "sla_impact": cost}
    summary.update(state="awaiting_resolution", tenants=tenants)
    _publish(summary)
    resolution: dict[str, Any] | None = None
    while resolution is None:
        resolution = DBOS.recv(RESOLVE_TOPIC, timeout_seconds=RESOLVE_WAIT)
    incident_release_step(node, before, resolution, opened_at)
    summary.update(state="resolved", resolution=resolution)
    _publish(summary)
    return summary

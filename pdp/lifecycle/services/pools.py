"""Dedicated pools: approving `DEDICATED_POOL_PROVISIONING` provisions one (workflow steps).

Onboarding a dedicated tenant that has no pool asks for approval; once approved, and once the
tenant's objects are applied and its policy published (the PDP must know the tenant to decide
the preemptions below), `provision` carves a pool for every entitled GPU class out of the fleet's
shared capacity (pdp/substrate/kubernetes/pools.py chooses the nodes):

1. **plan**: the candidate nodes (the adapter's nodes; for the dry run, the fleet's nominal
   ones), the deployments running on them (the adapter's pods); a candidate whose nodes host
   other tenants' running deployments is taken only if the PDP allows the tenant to preempt them
   (`preempt` intent, all-or-nothing), else the next one;
2. **carve**: the nodes are claimed in the database (a node belongs to one pool, across workers),
   the victims preempted and re-queued as the capacity rules do (scaled to 0, queued at once),
   the nodes labelled and tainted by server-side apply, the pool recorded (`pool.carved`) and the
   bundle republished with the fleet's new pool (pdp/lifecycle/fleet.py);
3. **no capacity**: the tenant stays `provisioning`; the reason is recorded (`pool.waiting`,
   shown by GET /v1/tenants/{t} under `provisioning`) and the workflow waits for a capacity retry
   (`POST /v1/capacity/retry` wakes it) or its own re-check every `--pool-retry-interval` seconds,
   which sees capacity added to the fleet document or the cluster, then plans again.

A failure after the carving gives the nodes back (their pool label and taints as they were,
`pool.released`), withdraws the policy and the fleet's pool, and onboarding compensates the rest.
Offboarding gives the nodes back the same way after withdrawing the policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import yaml
from dbos import DBOS

from pdp.lifecycle import test_faults
from pdp.lifecycle.runtime import Runtime, current
from pdp.lifecycle.services import capacity, realize
from pdp.lifecycle.states import DeploymentState
from pdp.lifecycle.storage import documents
from pdp.lifecycle.storage.pools import PoolRecords
from pdp.substrate.kubernetes import pools

TOPIC = "pool-capacity"
RETRY: dict[str, Any] = {
    "retries_allowed": True,
    "max_attempts": 3,
    "interval_seconds": 0.2,
    "backoff_rate": 2.0,
}
ACTIVE = ("claimed", "carved")


def wake(trigger: str) -> list[str]:
    """Wake every onboarding waiting for capacity (a capacity retry); the workflows woken."""
    woken = []
    for r in PoolRecords(current().db).requests("waiting_for_capacity"):
        DBOS.send(str(r["workflow_id"]), {"trigger": trigger}, TOPIC)
        woken.append(str(r["workflow_id"]))
    return woken


# planning ----------------------------------------------------------------------------------------


def _wf() -> str:
    return str(DBOS.workflow_id)


def _links(decision: Mapping[str, Any]) -> dict[str, str]:
    return realize.links(decision)


def _nodes(rt: Runtime, fleet: Mapping[str, Any], carved: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen = rt.adapter.nodes()
    return pools.nominal_nodes(fleet, carved) if seen is None else seen


def _victims(rt: Runtime, occupants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The occupants the lifecycle runs (running deployments of active tenants), as victims."""
    tiers = {
        str(t["name"]): str(t["policy"].get("tier", "")) for t in rt.store.tenants() if t["state"] == "active"
    }
    running = {
        (str(d["tenant"]), str(d["name"])): d
        for d in rt.store.deployments()
        if d["state"] == DeploymentState.RUNNING
    }
    out = []
    for o in occupants:
        dep = running.get((str(o["tenant"]), str(o["deployment"])))
        if dep is None or o["tenant"] not in tiers:
            continue
        tier = tiers[str(o["tenant"])]
        out.append(
            {
                "tenant": o["tenant"],
                "workload": o["deployment"],
                "tier": tier,
                "gpus": capacity.gpus(dep["spec"]),
                "priority_class_name": f"gpupaas-{tier}",
            }
        )
    return out


def _decide(rt: Runtime, intent: dict[str, Any]) -> dict[str, Any]:
    decision = rt.policy.decide(intent)
    rt.store.record(
        f"{_wf()}:decision:{intent['kind']}:{decision['decision_id']}",
        event="decision",
        tenant=str(intent["tenant"]),
        actor=str(intent.get("actor", "")),
        workflow_id=_wf(),
        detail={"kind": intent["kind"], "outcome": decision["outcome"], "reasons": decision["reasons"]},
        **_links(decision),
    )
    return decision


@DBOS.step()
def plan_step(tenant: str, policy: dict[str, Any], actor: str) -> dict[str, Any]:
    """The carvings for every entitled class, or the reason there is no capacity for one."""
    test_faults.at_step("pool:plan")
    rt = current()
    records = PoolRecords(rt.db)
    carved = records.active()
    mine = [c for c in carved if c["tenant"] == tenant]
    if mine:  # a workflow re-run after its carving
        return {"status": "ready", "carvings": mine}
    try:
        fleet = rt.policy.current_fleet()
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:  # an operator mid-edit: wait
        return {"status": "waiting", "reason": f"the fleet document cannot be read: {exc}"}
    nodes = _nodes(rt, fleet, carved)
    occupancy = rt.adapter.occupancy([str(n["name"]) for n in nodes])
    claimed = {n for c in carved for n in c["nodes"]}
    chosen: list[dict[str, Any]] = []
    for gpu_class, wanted in sorted((policy.get("entitlements") or {}).items()):
        if int(wanted) <= 0:
            continue
        pick = _pick(rt, tenant, policy, gpu_class, fleet, nodes, occupancy, claimed, actor)
        if "reason" in pick:
            return {"status": "waiting", "reason": pick["reason"]}
        chosen.append(pick)
    return {"status": "ready", "carvings": chosen}


def _pick(
    rt: Runtime,
    tenant: str,
    policy: dict[str, Any],
    gpu_class: str,
    fleet: dict[str, Any],
    nodes: list[dict[str, Any]],
    occupancy: dict[str, list[dict[str, str]]],
    claimed: set[str],
    actor: str,
) -> dict[str, Any]:
    """The best carving for one class whose victims (if any) the PDP lets the tenant preempt;
    the nodes of a deployment it refuses are left out and the next best tried. Else {reason}."""
    refused: set[tuple[str, str]] = set()
    why: list[str] = []
    while True:
        options, problems = pools.candidates(
            tenant, policy, gpu_class, fleet, nodes, occupancy, claimed, refused
        )
        if not options:
            wanted = int(policy["entitlements"][gpu_class])
            return {"reason": pools.shortfall(tenant, gpu_class, wanted, problems + why)}
        option = options[0]
        victims = _victims(rt, option["occupants"])
        if not victims:
            return {**option, "victims": []}
        decision = _decide(rt, capacity.preempt_intent(tenant, str(policy.get("tier", "")), victims, actor))
        if decision["outcome"] == "ALLOW":
            return {**option, "victims": victims, "preempt_decision": _links(decision)}
        allowed = {(str(v["tenant"]), str(v["workload"])) for v in capacity.allowed(victims, decision)}
        denied = {(str(v["tenant"]), str(v["workload"])) for v in victims} - allowed
        refused |= denied or {(str(v["tenant"]), str(v["workload"])) for v in victims}
        codes = ", ".join(sorted({r["code"] for r in decision["reasons"]}))
        names = ", ".join(f"{t}/{d}" for t, d in sorted(denied or refused))
        why.append(
            f"the PDP does not let tenant {tenant!r} preempt {names} on pool {option['source_pool']!r} "
            f"of cluster {option['cluster']!r} ({codes})"
        )


# carving and giving back -------------------------------------------------------------------------


def _preempt(rt: Runtime, tenant: str, victim: Mapping[str, Any], decision: Mapping[str, Any]) -> None:
    """Preempt one victim and queue it again at once, as the capacity rules do (keyed, so a re-run
    preempts once)."""
    dep = next(d for d in rt.store.deployments(str(victim["tenant"])) if d["name"] == victim["workload"])
    if dep["state"] != DeploymentState.RUNNING:
        return
    key = f"{_wf()}:preempted:{victim['tenant']}/{victim['workload']}"
    links = {"actor": f"dedicated pool for {tenant}", "workflow_id": _wf(), **_links(decision)}
    who, name = str(victim["tenant"]), str(victim["workload"])
    rt.store.put_deployment(who, name, DeploymentState.PREEMPTED, dep["spec"], event_key=key, **links)
    realize.evict(rt, who, dep["spec"], decision, event_key=f"{key}:evicted", workflow_id=_wf())
    rt.store.put_deployment(
        who, name, DeploymentState.QUEUED, dep["spec"], event_key=f"{key}:requeued", **links
    )


@DBOS.step(**RETRY)
def carve_step(tenant: str, carvings: list[dict[str, Any]], decision: dict[str, Any]) -> dict[str, Any]:
    """Claim the nodes, preempt what runs there, label and taint them, record the pools and
    republish; `conflict` when another carving claimed a node first (plan again)."""
    rt = current()
    records = PoolRecords(rt.db)
    taken = records.claim(carvings, _wf())
    if taken:
        return {"status": "conflict", "nodes": taken}
    for c in carvings:
        for victim in c.get("victims", []):
            _preempt(rt, tenant, victim, c.get("preempt_decision") or decision)
        for node in c["nodes"]:
            rt.adapter.apply(pools.carve(node, c["before"][node], tenant, c["pool"]))
        test_faults.at_step("pool:carve")
        records.set_state(
            c["pool"],
            tenant,
            "carved",
            event_key=f"{_wf()}:pool.carved:{c['pool']}",
            event="pool.carved",
            detail={
                **{k: c[k] for k in ("pool", "cluster", "region", "source_pool", "gpu_class", "nodes")},
                "victims": [f"{v['tenant']}/{v['workload']}" for v in c.get("victims", [])],
                "mode": rt.adapter.mode,
            },
            workflow_id=_wf(),
            **_links(decision),
        )
    revision = rt.policy.republish()
    records.set_request(tenant, _wf(), "provisioned")
    return {
        "status": "carved",
        "pools": [c["pool"] for c in carvings],
        "nodes": sorted(n for c in carvings for n in c["nodes"]),
        "victims": [f"{v['tenant']}/{v['workload']}" for c in carvings for v in c.get("victims", [])],
        "bundle_revision": revision,
    }


@DBOS.step()
def waiting_step(tenant: str, reason: str, decision: dict[str, Any]) -> None:
    rt = current()
    PoolRecords(rt.db).set_request(tenant, _wf(), "waiting_for_capacity", reason)
    digest = hashlib.sha256(reason.encode()).hexdigest()[:16]
    rt.store.record(
        f"{_wf()}:pool.waiting:{digest}",
        event="pool.waiting",
        tenant=tenant,
        workflow_id=_wf(),
        detail={"reason": reason},
        **_links(decision),
    )


@DBOS.step(**RETRY)
def release_step(tenant: str, reason: str, withdraw: bool, decision: dict[str, Any]) -> list[str]:
    """Give the tenant's carved nodes back (pool label and taints as they were), record it and
    republish; with `withdraw`, also take the tenant's policy out of the bundle (compensation of
    a failed onboarding)."""
    test_faults.at_step("pool:release")
    rt = current()
    records = PoolRecords(rt.db)
    released = []
    for c in records.active(tenant):
        for node in c["nodes"]:
            rt.adapter.apply(pools.restore(node, c["before"][node]))
        records.set_state(
            c["pool"],
            tenant,
            "released",
            event_key=f"{_wf()}:pool.released:{c['pool']}",
            event="pool.released",
            detail={
                "pool": c["pool"],
                "nodes": c["nodes"],
                "source_pool": c["source_pool"],
                "reason": reason,
            },
            workflow_id=_wf(),
            **_links(decision),
        )
        released.append(str(c["pool"]))
    if withdraw and tenant in documents.names(rt.policy.stack.settings.tenants):
        rt.policy.withdraw(tenant)
    elif released:
        rt.policy.republish()
    if released or any(r["tenant"] == tenant for r in records.requests()):
        records.set_request(tenant, _wf(), "released" if released else "failed", reason)
    return released


# what the workflows call -------------------------------------------------------------------------


def needed(decision: Mapping[str, Any]) -> bool:
    """The approved decision asked for a dedicated pool to be provisioned."""
    return pools.PROVISIONING_REASON in [r["code"] for r in decision.get("reasons", [])]


def provision(tenant: str, policy: dict[str, Any], decision: dict[str, Any], actor: str) -> dict[str, Any]:
    """Inside the onboarding workflow, after publishing: carve the tenant's dedicated pools, waiting
    (tenant `provisioning`, reason recorded) until there is capacity."""
    if not needed(decision):
        return {"status": "not_needed"}
    while True:
        plan = plan_step(tenant, policy, actor)
        if plan["status"] == "ready":
            result = carve_step(tenant, plan["carvings"], decision)
            if result["status"] == "carved":
                return result
            continue  # another carving took a node first: plan again
        waiting_step(tenant, str(plan["reason"]), decision)
        DBOS.recv(TOPIC, timeout_seconds=current().settings.pool_retry_interval)


def compensate(tenant: str, reason: str, decision: dict[str, Any]) -> list[str]:
    """Onboarding failed: give the carved nodes back and withdraw the tenant's policy if published."""
    return release_step(tenant, reason, True, decision)


def release(tenant: str, reason: str, decision: dict[str, Any]) -> list[str]:
    """Offboarding, after the policy was withdrawn: give the carved nodes back."""
    return release_step(tenant, reason, False, decision)

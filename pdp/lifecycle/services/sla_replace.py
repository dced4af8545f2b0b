"""Re-placing a deployment that breaches its SLA onto the pool the sla_breach decision chose.

The placement is asked afresh (a deploy_model decision under the policy in force, as every
re-placement is: pdp/lifecycle/services/realize/), then narrowed to the chosen pool: its region, and a
required node affinity on the pool label. The pool must be one the fresh placement allows (one of
its dedicated pools for a dedicated tenant, a pool of one of its eligible clusters). An escalation
moves a deployment inside its cluster only; a move across clusters is refused, not half done.
Idempotent per event key, like the other re-placements.
"""

from __future__ import annotations

from typing import Any

from pdp.lifecycle.runtime import Runtime
from pdp.lifecycle.services import realize
from pdp.lifecycle.services.replacement import decide_again
from pdp.substrate.kubernetes import workload
from pdp.substrate.labels import POOL_LABEL


def _pool_cluster(fleet: dict[str, Any], pool: str) -> tuple[str, dict[str, Any]] | None:
    for name, cluster in (fleet.get("clusters") or {}).items():
        if pool in (cluster.get("pools") or {}):
            return str(name), dict(cluster)
    return None


def onto_pool(
    rt: Runtime,
    tenant: str,
    name: str,
    pool: str,
    *,
    actor: str,
    cause: str,
    event_key: str,
    workflow_id: str,
) -> dict[str, Any]:
    """{"replaced": bool, "reason"?, "decision_id", ...}: the deployment's object re-applied with
    its pods required on `pool`."""
    dep = realize.running_deployment(rt, tenant, name)
    if dep is None:
        return {"deployment": name, "replaced": False, "reason": "not running"}
    kept = rt.store.workloads(tenant).get(name)
    if kept is not None and kept.get("event_key") == event_key:
        return {"deployment": name, "replaced": True, "pool": pool}  # this step ran already
    decision = decide_again(
        rt, tenant, dep, actor=actor, cause=cause, sharing=None, event_key=event_key, workflow_id=workflow_id
    )
    codes = [r["code"] for r in decision["reasons"]]
    out: dict[str, Any] = {"deployment": name, "pool": pool, **realize.links(decision)}
    if decision["outcome"] == "DENY":
        return {**out, "replaced": False, "reason": "the PDP refuses its placement: " + ", ".join(codes)}
    fleet = rt.policy.fleet
    found = _pool_cluster(fleet, pool)
    constraints = decision.get("constraints", {})
    eligible = [str(c) for c in constraints.get("eligible_clusters", [])]
    if found is None or found[0] not in eligible:
        where = f"cluster {found[0]}" if found else "no cluster of the fleet"
        return {**out, "replaced": False, "reason": f"pool {pool} is in {where}, not one of {eligible}"}
    cluster, spec_of_cluster = found
    single = not rt.clusters.managed
    current = realize.cluster_of(kept) if kept else None
    if not single and current is not None and current != cluster:
        return {
            **out,
            "replaced": False,
            "reason": f"pool {pool} is in cluster {cluster}, it runs in {current}",
        }
    spec = dep["spec"]
    place = workload.placement(
        constraints, fleet, str(spec.get("sharing", "none")), "" if single else cluster
    )
    if place["pools"] and pool not in place["pools"]:
        return {
            **out,
            "replaced": False,
            "reason": f"pool {pool} is not one of its dedicated pools {place['pools']}",
        }
    place["regions"] = [str(spec_of_cluster["region"])]
    place["node_affinity"] = [r for r in place["node_affinity"] if r.get("key") != POOL_LABEL] + [
        {"key": POOL_LABEL, "operator": "In", "values": [pool]}
    ]
    before = kept["placement"] if kept else {}
    if before == place:
        return {**out, "replaced": False, "reason": "placement unchanged"}
    # realize's own apply: render, apply through the cluster's adapter, keep, audit.
    realize.apply_placement(
        rt, tenant, spec, place, decision, running=True, event_key=event_key, event="deployment.replaced",
        workflow_id=workflow_id, because=decision,
        detail={"cause": cause, "to_pool": pool, "from": before, "to": place},
    )  # fmt: skip
    return {**out, "replaced": True}

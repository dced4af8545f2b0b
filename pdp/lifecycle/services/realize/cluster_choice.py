"""The cluster of a workload object: the one it is kept in, the one a deployment goes to, and a
call made there (realize/)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pdp.lifecycle import clusters as fleet_clusters
from pdp.lifecycle.runtime import Runtime
from pdp.lifecycle.services import cluster_reach
from pdp.lifecycle.states import DeploymentState


class NoEligibleCluster(RuntimeError):
    """None of the decision's eligible clusters is one the tenant is realized in."""


def cluster_of(kept: Mapping[str, Any]) -> str:
    """The cluster a kept workload object was applied to (SINGLE in a single-cluster worker)."""
    return str(kept["placement"].get("cluster", fleet_clusters.SINGLE))


def in_cluster(
    rt: Runtime,
    tenant: str,
    cluster: str,
    operation: str,
    call: Any,
    *,
    event_key: str,
    workflow_id: str,
    decision_id: str,
) -> Any:
    """`call` in the cluster (cluster_reach.reach): `decision_id`, the decision it is done for."""
    return cluster_reach.reach(
        rt, cluster, operation, call,
        tenant=tenant, event_key=event_key, workflow_id=workflow_id, decision_id=decision_id,
    )  # fmt: skip


def _placed_gpus(rt: Runtime, exclude: tuple[str, str]) -> list[tuple[str, int]]:
    """(cluster, GPUs) of every running deployment's workload object, but `exclude`'s."""
    out = []
    running = {
        (d["tenant"], d["name"]): d for d in rt.store.deployments() if d["state"] == DeploymentState.RUNNING
    }
    for t in {tenant for tenant, _ in running}:
        for name, kept in rt.store.workloads(t).items():
            dep = running.get((t, name))
            if dep is not None and (t, name) != exclude:
                out.append(
                    (cluster_of(kept), int(dep["spec"]["gpus_per_replica"]) * int(dep["spec"]["replicas"]))
                )
    return out


def placed_in(rt: Runtime, cluster: str) -> set[tuple[str, str]]:
    """(tenant, deployment) of every workload object applied to `cluster`."""
    return {
        (str(t["name"]), name)
        for t in rt.store.tenants()
        for name, kept in rt.store.workloads(str(t["name"])).items()
        if cluster_of(kept) == cluster
    }


def choose_cluster(
    rt: Runtime, tenant: str, spec: Mapping[str, Any], decision: Mapping[str, Any], current: str | None = None
) -> str:
    """The cluster a deployment goes to: `current` while it stays eligible, else the best ranked of
    the decision's eligible clusters the tenant is realized in (SINGLE when not managed)."""
    if not rt.clusters.managed:
        return fleet_clusters.SINGLE
    eligible = [str(c) for c in decision.get("constraints", {}).get("eligible_clusters", [])]
    realized = set(cluster_reach.of_tenant(rt, tenant))
    candidates = [c for c in eligible if c in realized]
    if not candidates:
        raise NoEligibleCluster(
            f"{tenant}/{spec['deployment']}: none of the eligible clusters {eligible} is one the "
            f"tenant is realized in {sorted(realized)}"
        )
    if current in candidates:
        return current
    free = fleet_clusters.free_gpus(
        rt.policy.fleet, tenant, str(spec["gpu_class"]), _placed_gpus(rt, (tenant, str(spec["deployment"])))
    )
    needed = int(spec["gpus_per_replica"]) * int(spec["replicas"])
    return fleet_clusters.rank(candidates, free, needed)[0]

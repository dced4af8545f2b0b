"""Incident response's view of the fleet: which cluster a node is in, the node read and taken out of
service through that cluster's adapter, which deployments a fault on it affects, and what the fault
cost each tenant (GPU-minutes). The durable workflow that uses them:
pdp/lifecycle/workflows/incident.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from pdp.lifecycle import clusters as fleet_clusters
from pdp.lifecycle.runtime import Runtime
from pdp.lifecycle.services import capacity, degradation
from pdp.lifecycle.states import DeploymentState
from pdp.substrate.base import Adapter
from pdp.substrate.kubernetes import cordon
from pdp.telemetry.waste import deployment_of

if TYPE_CHECKING:
    from pdp.substrate.kubernetes.adapter import KubernetesAdapter


def fleet_nodes(fleet: Mapping[str, Any]) -> dict[str, str]:
    """node -> cluster, for every node the fleet names (`node_names` of its pools)."""
    out: dict[str, str] = {}
    for cname, cluster in (fleet.get("clusters") or {}).items():
        for pool in (cluster.get("pools") or {}).values():
            for node in pool.get("node_names") or []:
                out[str(node)] = str(cname)
    return out


def cluster_of_node(rt: Runtime, node: str) -> str:
    """The cluster whose adapter reaches `node` (SINGLE when the worker manages one cluster)."""
    if not rt.clusters.managed:
        return fleet_clusters.SINGLE
    cluster = fleet_nodes(rt.policy.fleet).get(node)
    if cluster is None or cluster not in rt.clusters.adapters:
        raise LookupError(f"node {node!r} is in no cluster this worker reaches (the fleet's node_names)")
    return cluster


def known_node(rt: Runtime, node: str) -> bool:
    """A node the fleet names, or one the adapter sees labelled with a pool."""
    if node in fleet_nodes(rt.policy.fleet):
        return True
    try:
        seen = rt.adapter.nodes()
    except (ConnectionError, RuntimeError):
        return False
    return any(n["name"] == node for n in seen or [])


def _kubernetes(adapter: Adapter) -> KubernetesAdapter | None:
    return cast("KubernetesAdapter", adapter) if getattr(adapter, "mode", "") == "kubernetes" else None


def read_node(adapter: Adapter, node: str) -> dict[str, Any]:
    """The node's taints and unschedulable flag (cordon.state); a dry run reads nothing."""
    kube = _kubernetes(adapter)
    if kube is None:
        return cordon.state(None)
    found = kube.get({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}})
    if found is None:
        raise LookupError(f"node {node!r}: the API server has no such Node")
    return cordon.state(found)


def apply_node(adapter: Adapter, obj: Mapping[str, Any]) -> None:
    """Server-side apply of a Node as incident response's own field manager."""
    kube = _kubernetes(adapter)
    if kube is None:
        adapter.apply(obj)
    else:
        kube.apply(obj, field_manager=cordon.FIELD_MANAGER)


def affected(
    rt: Runtime, on_node: Iterable[Mapping[str, str]], pods: Iterable[Mapping[str, str]]
) -> list[dict[str, Any]]:
    """The running deployments a fault on the node affects, by tenant and name (the order they
    are re-placed in is the degradation policy's, `degrade_intents`): those the adapter finds pods
    of on the node (`on_node`: tenant, deployment), and those of the pods the fault report names
    (`pods`: namespace, pod, as dcgm-exporter labels a GPU's series), matched to a tenant by its
    namespaces. Each with the GPUs it loses: its GPUs per replica times its pods on the node (at
    least one)."""
    tenants = {str(t["name"]): t for t in rt.store.tenants()}
    by_namespace = {
        str(ns): name for name, t in tenants.items() for ns in (t.get("policy") or {}).get("namespaces", [])
    }
    pod_count: dict[tuple[str, str], set[str]] = {}
    for entry in on_node:
        pod_count.setdefault((str(entry["tenant"]), str(entry["deployment"])), set())
    for p in pods:
        tenant = by_namespace.get(str(p.get("namespace", "")))
        if tenant is not None:
            pod_count.setdefault((tenant, deployment_of(str(p["pod"]))), set()).add(str(p["pod"]))
    running = {
        (d["tenant"], d["name"]): d for d in rt.store.deployments() if d["state"] == DeploymentState.RUNNING
    }
    out = []
    for (tenant, name), seen in pod_count.items():
        dep = running.get((tenant, name))
        if dep is None:
            continue
        tier = str((tenants[tenant].get("policy") or {}).get("tier", ""))
        out.append({
            "tenant": tenant,
            "deployment": name,
            "tier": tier,
            "gpu_class": str(dep["spec"]["gpu_class"]),
            "gpus": int(dep["spec"]["gpus_per_replica"]) * max(1, len(seen)),
        })  # fmt: skip
    return sorted(out, key=lambda a: (a["tenant"], a["deployment"]))


def node_gpus(fleet: Mapping[str, Any], node: str) -> tuple[str, int] | None:
    """(GPU class, GPUs) of a node the fleet names, from its pool; None for a node it does not."""
    for cluster in (fleet.get("clusters") or {}).values():
        for pool in (cluster.get("pools") or {}).values():
            if node in (pool.get("node_names") or []):
                return str(pool["gpu_class"]), int(pool.get("gpus_per_node", 0))
    return None


def degrade_intents(rt: Runtime, node: str, hit: list[dict[str, Any]], actor: str) -> list[dict[str, Any]]:
    """One degrade intent per GPU class the fault hit: the GPUs short once the node is out of
    service (what running deployments hold, beyond the class's capacity without the node's
    GPUs), every running deployment of the class (those on the node `affected`), and room made
    for the highest tier the fault hit. The policy (policies/gpupaas/degradation) answers which
    are preempted or scaled and the order the others are re-placed in."""
    ranks = {"spot": 1, "standard": 2, "enterprise": 3}
    tenants, deployments = rt.store.tenants(), rt.store.deployments()
    reported = rt.store.reported_capacity()
    lost = node_gpus(rt.policy.fleet, node)
    out = []
    for gpu_class in sorted({str(h["gpu_class"]) for h in hit}):
        of_class = [h for h in hit if h["gpu_class"] == gpu_class]
        gone = lost[1] if lost and lost[0] == gpu_class else sum(int(h["gpus"]) for h in of_class)
        room = capacity.headroom(gpu_class, rt.policy.fleet, reported, deployments)
        short = max(0, int(room["running"]) - (int(room["capacity"]) - gone))
        top = max((str(h["tier"]) for h in of_class), key=lambda t: ranks.get(t, 0))
        rows = degradation.deployments_of_class(
            gpu_class, tenants, deployments, affected={(h["tenant"], h["deployment"]) for h in of_class}
        )
        out.append(degradation.intent("incident", gpu_class, short, rows, actor, for_tier=top))
    return out


def in_plan_order(hit: list[dict[str, Any]], order: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The affected deployments the plans re-place, in their order (`replace_order`)."""
    by_key = {(h["tenant"], h["deployment"]): h for h in hit}
    return [
        by_key[(str(o["tenant"]), str(o["deployment"]))]
        for o in order
        if (o["tenant"], o["deployment"]) in by_key
    ]


def by_tenant(deployments: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The affected deployments grouped per tenant, the tenants in the deployments' order (tier)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for d in deployments:
        grouped.setdefault(d["tenant"], []).append(d)
    return list(grouped.items())


def impact(deployments: list[dict[str, Any]], opened_at: float, replaced_at: float) -> dict[str, Any]:
    """One tenant's SLA impact: each affected deployment's GPUs out of service from the fault
    until its re-placement was applied, in GPU-minutes (pure)."""
    minutes = max(0.0, replaced_at - opened_at) / 60
    rows = [
        {"deployment": d["deployment"], "gpus": d["gpus"], "minutes": round(minutes, 3),
         "gpu_minutes": round(d["gpus"] * minutes, 3)}
        for d in deployments
    ]  # fmt: skip
    return {"gpu_minutes": round(sum(r["gpu_minutes"] for r in rows), 3), "deployments": rows}

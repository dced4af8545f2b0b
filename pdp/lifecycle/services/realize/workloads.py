"""Workload objects applied, re-applied, scaled to 0 and deleted, each kept in the store with
the placement it was rendered from (realize/)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pdp.lifecycle import clusters as fleet_clusters
from pdp.lifecycle.runtime import Runtime
from pdp.lifecycle.services.realize.cluster_choice import choose_cluster, cluster_of, in_cluster
from pdp.lifecycle.services.realize.deployments import links, namespace_of
from pdp.lifecycle.states import DeploymentState
from pdp.substrate.base import Adapter
from pdp.substrate.gateway import apply as routes
from pdp.substrate.kubernetes import objects, workload


def apply_placement(
    rt: Runtime,
    tenant: str,
    spec: Mapping[str, Any],
    place: Mapping[str, Any],
    placed_by: Mapping[str, Any],
    *,
    running: bool,
    event_key: str,
    event: str,
    workflow_id: str,
    because: Mapping[str, Any],
    detail: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Render, apply and keep one workload object. `placed_by` names the decision the placement
    came from (the object's annotations); `because` is the decision this change is audited with."""
    ids = links(placed_by)
    obj = workload.render(
        tenant,
        namespace_of(rt, tenant),
        spec,
        place,
        rt.policy.fleet,
        running=running,
        decision_id=ids["decision_id"],
        bundle_revision=ids["bundle_revision"],
    )
    cluster = cluster_of({"placement": place})
    tier = str(rt.store.tenant(tenant)["policy"].get("tier", "standard"))
    namespace, name = namespace_of(rt, tenant), workload.name_of(spec)

    def place_there(adapter: Adapter) -> None:
        adapter.apply(obj)
        routes.apply(adapter, rt.policy.fleet, tenant, namespace, name, tier)

    in_cluster(
        rt, tenant, cluster, "apply workload", place_there,
        event_key=event_key, workflow_id=workflow_id, decision_id=links(because)["decision_id"],
    )  # fmt: skip
    record = {"object": obj, "placement": dict(place), "event_key": event_key, **ids}
    rt.store.put_workload(
        tenant,
        workload.name_of(spec),
        record,
        event_key=event_key,
        event=event,
        detail={
            "deployment": workload.name_of(spec),
            "object": objects.key(obj),
            "replicas": obj["spec"]["replicas"],
            **({"cluster": cluster} if cluster else {}),
            **(detail or {}),
        },
        workflow_id=workflow_id,
        **links(because),
    )
    return obj


def apply_workload(
    rt: Runtime,
    tenant: str,
    spec: Mapping[str, Any],
    decision: Mapping[str, Any],
    *,
    event_key: str,
    workflow_id: str,
    cluster: str | None = None,
) -> dict[str, Any]:
    """A newly placed deployment: its object from the deploy decision's constraints, in
    `cluster` when given (where room was made for it), else in the cluster chosen for it."""
    kept = rt.store.workloads(tenant).get(workload.name_of(spec))  # a preempted one, resumed
    if cluster is None:
        cluster = choose_cluster(rt, tenant, spec, decision, cluster_of(kept) if kept else None)
    place = workload.placement(
        decision.get("constraints", {}), rt.policy.fleet, str(spec.get("sharing", "none")), cluster
    )
    obj = apply_placement(
        rt,
        tenant,
        spec,
        place,
        decision,
        running=True,
        event_key=event_key,
        event="workload.applied",
        workflow_id=workflow_id,
        because=decision,
        detail={"placement": place},
    )
    if kept is not None and cluster_of(kept) != cluster:
        # Its kept (scaled to 0) object was in another cluster: it runs here now, not there.
        leave(rt, tenant, kept, event_key=f"{event_key}:left", workflow_id=workflow_id,
              decision_id=links(decision)["decision_id"])  # fmt: skip
    return obj


def reapply_workload(
    rt: Runtime,
    tenant: str,
    spec: Mapping[str, Any],
    state: str,
    decision: Mapping[str, Any],
    *,
    event_key: str,
    workflow_id: str,
    event: str = "workload.applied",
) -> dict[str, Any] | None:
    """The deployment's object again, with its kept placement and the spec as it is now (replicas,
    batch size); 0 replicas unless running. None when it has no object (never placed)."""
    kept = rt.store.workloads(tenant).get(workload.name_of(spec))
    if kept is None:
        return None
    return apply_placement(
        rt,
        tenant,
        spec,
        kept["placement"],
        kept,
        running=state == DeploymentState.RUNNING,
        event_key=event_key,
        event=event,
        workflow_id=workflow_id,
        because=decision,
    )


def evict(
    rt: Runtime,
    tenant: str,
    spec: Mapping[str, Any],
    decision: Mapping[str, Any],
    *,
    event_key: str,
    workflow_id: str,
) -> dict[str, Any] | None:
    """A preempted deployment's object scaled to 0 replicas; kept, with its placement, so the
    workload can be resumed."""
    return reapply_workload(
        rt,
        tenant,
        spec,
        DeploymentState.PREEMPTED,
        decision,
        event_key=event_key,
        workflow_id=workflow_id,
        event="workload.evicted",
    )


def delete_workloads(
    rt: Runtime, tenant: str, *, event_key: str, workflow_id: str, reason: str, **decision: str
) -> list[str]:
    """Delete every workload object of the tenant; returns their keys. `decision`: the links
    (`links()`) of the decision it is done for."""
    deleted = []
    for name, kept in rt.store.workloads(tenant).items():
        cluster = cluster_of(kept)
        obj = kept["object"]

        def remove(adapter: Adapter, o: dict[str, Any] = obj, n: str = name) -> None:
            routes.delete(adapter, rt.policy.fleet, tenant, o["metadata"]["namespace"], n)
            adapter.delete(o)

        in_cluster(
            rt,
            tenant,
            cluster,
            "delete workload",
            remove,
            event_key=f"{event_key}:{name}",
            workflow_id=workflow_id,
            decision_id=decision.get("decision_id", ""),
        )
        rt.store.put_workload(
            tenant,
            name,
            None,
            event_key=f"{event_key}:{name}",
            event="workload.deleted",
            detail={"deployment": name, "object": objects.key(obj), "reason": reason,
                    **({"cluster": cluster} if cluster else {})},
            workflow_id=workflow_id,
            **decision,
        )  # fmt: skip
        deleted.append(fleet_clusters.label(cluster, objects.key(obj)))
    return deleted


def leave(
    rt: Runtime, tenant: str, kept: Mapping[str, Any], *, event_key: str, workflow_id: str, decision_id: str
) -> None:
    """Delete a workload object (and its routes) from the cluster it was kept in, for the decision
    that placed it elsewhere."""
    obj = kept["object"]

    def remove(adapter: Adapter) -> None:
        routes.delete(adapter, rt.policy.fleet, tenant, obj["metadata"]["namespace"], obj["metadata"]["name"])
        adapter.delete(obj)

    in_cluster(
        rt,
        tenant,
        cluster_of(kept),
        "delete moved workload",
        remove,
        event_key=event_key,
        workflow_id=workflow_id,
        decision_id=decision_id,
    )

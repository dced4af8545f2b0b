"""Deployments realized as workload objects (what the workflow steps run; their re-placement is
pdp/lifecycle/services/replacement.py).

Every deployment that runs has one apps/v1 Deployment in its tenant's first namespace, rendered
from the PDP's placement decision (pdp/substrate/kubernetes/workload.py) and applied through the
adapter of one cluster: a multi-cluster worker chooses it among the decision's eligible clusters
the tenant is realized in, those where it fits first in the policy's order (pdp/lifecycle/clusters.py),
and keeps it there while it stays eligible.
The object and the placement it was rendered from are kept in the store, so scaling or a batch
size change re-applies the same placement, preemption scales it to 0 (resumable), offboarding
deletes it, and a policy change (SLA, GPU sharing) can ask the PDP again and re-apply only the
workloads whose placement moved. Each function is idempotent: applies are server-side, audit
records are keyed by workflow step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pdp.lifecycle import clusters as fleet_clusters
from pdp.lifecycle.runtime import Runtime
from pdp.lifecycle.services import cluster_reach
from pdp.lifecycle.services.substrates import render_tenant
from pdp.lifecycle.states import DeploymentState
from pdp.substrate import tenant_objects
from pdp.substrate.base import Adapter
from pdp.substrate.gateway import apply as routes
from pdp.substrate.kubernetes import objects, workload


def links(decision: Mapping[str, Any]) -> dict[str, str]:
    return {
        "decision_id": str(decision.get("decision_id", "")),
        "bundle_revision": str(decision.get("bundle_revision", "")),
    }


def _namespace(rt: Runtime, tenant: str) -> str:
    return str(rt.store.tenant(tenant)["policy"]["namespaces"][0])


def deployment_of(rt: Runtime, tenant: str, name: str) -> dict[str, Any] | None:
    return next((d for d in rt.store.deployments(tenant) if d["name"] == name), None)


def running_deployment(rt: Runtime, tenant: str, name: str) -> dict[str, Any] | None:
    """The tenant's deployment of that name while it runs (None otherwise)."""
    dep = deployment_of(rt, tenant, name)
    return dep if dep is not None and dep["state"] == DeploymentState.RUNNING else None


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
        _namespace(rt, tenant),
        spec,
        place,
        rt.policy.fleet,
        running=running,
        decision_id=ids["decision_id"],
        bundle_revision=ids["bundle_revision"],
    )
    cluster = cluster_of({"placement": place})
    tier = str(rt.store.tenant(tenant)["policy"].get("tier", "standard"))
    namespace, name = _namespace(rt, tenant), workload.name_of(spec)

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


def apply_policy(
    rt: Runtime,
    tenant: str,
    policy: Mapping[str, Any],
    previous: Mapping[str, Any],
    decision: Mapping[str, Any],
    *,
    event_key: str,
    workflow_id: str,
) -> str:
    """Re-apply the tenant objects that follow its policy (quota, Kueue, PriorityClass), publish
    the policy into the bundle and record it; returns the bundle revision OPA serves now."""
    rendered, old = render_tenant(rt, policy), render_tenant(rt, previous)

    def follow(adapter: Adapter) -> None:
        for group in tenant_objects.POLICY_GROUPS:
            before = {objects.key(o): o for o in old[group]}
            for obj in rendered[group]:
                was = before.get(objects.key(obj))
                if obj["kind"] == "PriorityClass" and was is not None and obj != was:
                    # A PriorityClass's value and preemptionPolicy are immutable: replace the
                    # object. Running pods keep the priority they were admitted with.
                    adapter.delete(was)
                adapter.apply(obj)
            # What the new policy no longer renders (a dedicated tenant's Kueue flavor once it is
            # shared), removed after what replaced it is in place.
            for gone in objects.stale(old[group], rendered[group]):
                adapter.delete(gone)

    decision_id = str(decision.get("decision_id", ""))
    for cluster in cluster_reach.of_tenant(rt, tenant):
        in_cluster(
            rt, tenant, cluster, "apply policy", follow,
            event_key=event_key, workflow_id=workflow_id, decision_id=decision_id,
        )  # fmt: skip
    if policy.get("tier") != previous.get("tier"):  # the routes' timeouts and priority follow the tier
        tier = str(policy.get("tier", "standard"))
        for name, kept in rt.store.workloads(tenant).items():
            namespace = kept["object"]["metadata"]["namespace"]

            def route(adapter: Adapter, ns: str = namespace, n: str = name) -> None:
                routes.apply(adapter, rt.policy.fleet, tenant, ns, n, tier)

            in_cluster(
                rt,
                tenant,
                cluster_of(kept),
                "apply routes",
                route,
                event_key=event_key,
                workflow_id=workflow_id,
                decision_id=decision_id,
            )
    revision = rt.policy.publish(policy)
    rt.store.update_policy(
        tenant,
        policy,
        event_key=event_key,
        workflow_id=workflow_id,
        decision_id=decision_id,
        bundle_revision=revision,
        detail={
            "tier": {"from": previous.get("tier"), "to": policy.get("tier")},
            "isolation": {"from": previous.get("isolation"), "to": policy.get("isolation")},
            "objects": [objects.key(o) for g in tenant_objects.POLICY_GROUPS for o in rendered[g]],
        },
    )
    return revision

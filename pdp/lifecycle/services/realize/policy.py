"""A tenant's policy followed by its objects in every cluster it is realized in, published into
the bundle and recorded (realize/)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pdp.lifecycle.runtime import Runtime
from pdp.lifecycle.services import cluster_reach
from pdp.lifecycle.services.realize.cluster_choice import cluster_of, in_cluster
from pdp.lifecycle.services.substrates import render_tenant
from pdp.substrate import tenant_objects
from pdp.substrate.base import Adapter
from pdp.substrate.gateway import apply as routes
from pdp.substrate.kubernetes import objects


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

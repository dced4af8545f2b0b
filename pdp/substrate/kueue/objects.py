"""Kueue objects rendered from the fleet and tenant policy (pure functions).

Two owners, two sets:

- the platform's (`platform(fleet)`), applied by `pdp kueue-controller` at start: a ResourceFlavor
  per GPU class the fleet has shared pools of, the cohort tree (a root and one cohort per tier),
  a WorkloadPriorityClass per tier and the AdmissionCheck that hands every tenant's workloads to
  the PDP;
- each tenant's (`tenant_objects(policy, fleet)`), the "kueue" group of a tenant's objects
  (pdp/substrate/tenant_objects.py) the lifecycle applies at onboarding, re-applies on quota and SLA
  changes and deletes at offboarding: a ResourceFlavor per entitled GPU class of a dedicated tenant
  (its own nodes, taint and toleration), its ClusterQueue and a LocalQueue in each of its
  namespaces.

The tier rules (TIER_RULES) follow the policy's preemption rules (policies/gpupaas/preemption): a
tier may preempt only tenants of a lower tier that allow preemption, never its own. In Kueue terms
only spot tenants that allow preemption borrow idle quota of the cohort tree (the tiers' `borrows`
in the policy's lib.tiers), so borrowed quota is always preemptible; enterprise and standard
tenants never borrow (beyond the entitlement is an approval in the policy, not a queueing
decision) and reclaim what they lent by preempting the borrowers (`reclaimWithinCohort: Any`; the
only borrowers are spot); nobody preempts inside its own queue. Dedicated capacity is never lent
(`lendingLimit: 0`); shared capacity lends what it does not use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pdp.substrate.kubernetes.resources import register
from pdp.substrate.kueue.version import API_VERSION
from pdp.substrate.labels import (
    DEDICATED_TAINT,
    DEDICATED_TENANT_LABEL,
    LOCAL_QUEUE,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    TENANT_LABEL,
    TIER_PRIORITY,
    TIER_PRIORITY_CLASS,
)
from pdp.substrate.tiers import TIER_BORROWS, tenant_borrows

Obj = dict[str, Any]

CHECK_NAME = "gpupaas-pdp"
CONTROLLER_NAME = "gpupaas.io/pdp"
ROOT_COHORT = "gpupaas"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
DEFAULT_RESOURCE = "nvidia.com/gpu"

# kind -> (plural, namespaced)
RESOURCES: dict[str, tuple[str, bool]] = {
    "ResourceFlavor": ("resourceflavors", False),
    "Cohort": ("cohorts", False),
    "WorkloadPriorityClass": ("workloadpriorityclasses", False),
    "AdmissionCheck": ("admissionchecks", False),
    "ClusterQueue": ("clusterqueues", False),
    "LocalQueue": ("localqueues", True),
    "Workload": ("workloads", True),
}
register(RESOURCES)


@dataclass(frozen=True)
class TierRules:
    reclaim_within_cohort: str  # Kueue's PreemptionPolicy: Never | LowerPriority | Any
    # may use idle quota of the cohort tree (when the tenant allows preemption): pdp/substrate/tiers.py
    borrows: bool


TIER_RULES = {
    "enterprise": TierRules(reclaim_within_cohort="Any", borrows=TIER_BORROWS["enterprise"]),
    "standard": TierRules(reclaim_within_cohort="Any", borrows=TIER_BORROWS["standard"]),
    "spot": TierRules(reclaim_within_cohort="Never", borrows=TIER_BORROWS["spot"]),
}


def _meta(name: str, tenant: str | None = None, namespace: str | None = None) -> dict[str, Any]:
    labels = {MANAGED_BY_LABEL: MANAGED_BY}
    if tenant:
        labels[TENANT_LABEL] = tenant
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if namespace:
        meta["namespace"] = namespace
    return meta


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def flavor_name(gpu_class: str, dedicated_tenant: str | None = None) -> str:
    base = f"gpupaas-{_slug(gpu_class)}"
    return f"{base}-dedicated-{dedicated_tenant}" if dedicated_tenant else f"{base}-shared"


def cohort_name(tier: str) -> str:
    return f"{ROOT_COHORT}-{tier}"


def cluster_queue_name(tenant: str) -> str:
    return f"gpupaas-{tenant}"


def _class_label(gpu_classes: Mapping[str, Any], gpu_class: str) -> dict[str, str]:
    label = gpu_classes.get(gpu_class, {}).get("node_label") or {}
    return {str(label["key"]): str(label["value"])} if label else {}


def _resource(gpu_classes: Mapping[str, Any], gpu_class: str) -> str:
    return str(gpu_classes.get(gpu_class, {}).get("resource", DEFAULT_RESOURCE))


def dedicated_toleration(tenant: str) -> dict[str, str]:
    """The toleration of a tenant's dedicated nodes, as the policy's constraints write it."""
    return {"key": DEDICATED_TAINT, "operator": "Equal", "value": tenant, "effect": "NoSchedule"}


def shared_flavor(gpu_class: str, fleet: Mapping[str, Any]) -> Obj:
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceFlavor",
        "metadata": _meta(flavor_name(gpu_class)),
        "spec": {"nodeLabels": _class_label(fleet.get("gpu_classes", {}), gpu_class)},
    }


def dedicated_flavor(gpu_class: str, fleet: Mapping[str, Any], tenant: str) -> Obj:
    """The tenant's own nodes of the class: Kueue puts their labels into the pods' node selector
    and their toleration into the pods, so only this tenant's queue can place work there."""
    labels = {**_class_label(fleet.get("gpu_classes", {}), gpu_class), DEDICATED_TENANT_LABEL: tenant}
    toleration = dedicated_toleration(tenant)
    return {
        "apiVersion": API_VERSION,
        "kind": "ResourceFlavor",
        "metadata": _meta(flavor_name(gpu_class, tenant), tenant),
        "spec": {
            "nodeLabels": labels,
            "nodeTaints": [{"key": DEDICATED_TAINT, "value": tenant, "effect": "NoSchedule"}],
            "tolerations": [toleration],
        },
    }


def shared_classes(fleet: Mapping[str, Any]) -> list[str]:
    """The GPU classes the fleet has shared pools of."""
    return sorted(
        {
            str(pool["gpu_class"])
            for cluster in (fleet.get("clusters") or {}).values()
            for pool in (cluster.get("pools") or {}).values()
            if pool.get("isolation") == "shared"
        }
    )


def platform(fleet: Mapping[str, Any]) -> list[Obj]:
    """The objects every tenant's queue relies on, in the order to apply them."""
    flavors = [shared_flavor(cls, fleet) for cls in shared_classes(fleet)]
    cohorts: list[Obj] = [
        {"apiVersion": API_VERSION, "kind": "Cohort", "metadata": _meta(ROOT_COHORT), "spec": {}}
    ]
    cohorts += [
        {
            "apiVersion": API_VERSION,
            "kind": "Cohort",
            "metadata": _meta(cohort_name(tier)),
            "spec": {"parentName": ROOT_COHORT},
        }
        for tier in TIER_PRIORITY
    ]
    priorities = [
        {
            "apiVersion": API_VERSION,
            "kind": "WorkloadPriorityClass",
            "metadata": _meta(TIER_PRIORITY_CLASS[tier]),
            "value": value,
            "description": f"gpupaas {tier} tier: jobs label kueue.x-k8s.io/priority-class with it",
        }
        for tier, value in TIER_PRIORITY.items()
    ]
    check = {
        "apiVersion": API_VERSION,
        "kind": "AdmissionCheck",
        "metadata": _meta(CHECK_NAME),
        "spec": {"controllerName": CONTROLLER_NAME},
    }
    return [*flavors, *cohorts, *priorities, check]


def _quota(resource: str, nominal: int, *, lends: bool, borrows: bool) -> dict[str, Any]:
    # Quantities as the API server stores them (strings), so a re-apply compares equal.
    quota: dict[str, Any] = {"name": resource, "nominalQuota": str(nominal)}
    if not borrows:
        quota["borrowingLimit"] = "0"
    if not lends:
        quota["lendingLimit"] = "0"
    return quota


def _fleet_order(entitlements: Mapping[str, Any], classes: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Entitlements in the order the fleet lists its GPU classes (then by name): Kueue tries a
    queue's flavors in order for a job that names no GPU class."""
    rank = {name: i for i, name in enumerate(classes)}
    return sorted(entitlements.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))


def cluster_queue(policy: Mapping[str, Any], fleet: Mapping[str, Any]) -> Obj:
    tenant = str(policy["name"])
    tier = str(policy.get("tier", "spot"))
    rules = TIER_RULES.get(tier, TIER_RULES["spot"])
    borrows = tenant_borrows(tier, policy.get("allow_preemption"))
    dedicated = policy.get("isolation") == "dedicated"
    classes = fleet.get("gpu_classes", {})
    groups: dict[str, list[dict[str, Any]]] = {}
    for cls, n in _fleet_order(policy.get("entitlements") or {}, classes):
        resource = _resource(classes, cls)
        groups.setdefault(resource, []).append(
            {
                "name": flavor_name(cls, tenant if dedicated else None),
                "resources": [_quota(resource, int(n), lends=not dedicated, borrows=borrows)],
            }
        )
    return {
        "apiVersion": API_VERSION,
        "kind": "ClusterQueue",
        "metadata": _meta(cluster_queue_name(tenant), tenant),
        "spec": {
            "cohortName": cohort_name(tier),
            "namespaceSelector": {"matchLabels": {TENANT_LABEL: tenant}},
            "queueingStrategy": "BestEffortFIFO",
            "resourceGroups": [
                {"coveredResources": [resource], "flavors": flavors}
                for resource, flavors in sorted(groups.items())
            ],
            "preemption": {
                "reclaimWithinCohort": rules.reclaim_within_cohort,
                "borrowWithinCohort": {"policy": "Never"},
                "withinClusterQueue": "Never",
            },
            "admissionChecksStrategy": {"admissionChecks": [{"name": CHECK_NAME}]},
        },
    }


def local_queues(policy: Mapping[str, Any]) -> list[Obj]:
    tenant = str(policy["name"])
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "LocalQueue",
            "metadata": _meta(LOCAL_QUEUE, tenant, str(ns)),
            "spec": {"clusterQueue": cluster_queue_name(tenant)},
        }
        for ns in policy.get("namespaces", [])
    ]


def tenant_objects(policy: Mapping[str, Any], fleet: Mapping[str, Any]) -> list[Obj]:
    """The tenant's Kueue objects in the order to apply them (flavors before the queue that
    names them, the ClusterQueue before the LocalQueues that point at it)."""
    tenant = str(policy["name"])
    flavors = []
    if policy.get("isolation") == "dedicated":
        classes = fleet.get("gpu_classes", {})
        entitled = _fleet_order(policy.get("entitlements") or {}, classes)
        flavors = [dedicated_flavor(cls, fleet, tenant) for cls, _ in entitled]
    return [*flavors, cluster_queue(policy, fleet), *local_queues(policy)]

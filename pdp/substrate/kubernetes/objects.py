"""The Kubernetes objects that make a tenant, rendered from its policy (pure functions).

Rendered by lifecycle group; pdp/substrate/tenant_objects.py adds the tenant's Kueue queues and
orders the groups as onboarding applies them. Each object carries the tenant label so the platform
can find everything a tenant owns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pdp.substrate.labels import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    TENANT_LABEL,
    TIER_PRIORITY,
    TIER_PRIORITY_CLASS,
)
from pdp.substrate.tiers import tenant_borrows

Obj = dict[str, Any]


def _meta(tenant: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {TENANT_LABEL: tenant}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def gpu_limits(policy: Mapping[str, Any], fleet: Mapping[str, Any]) -> dict[str, int]:
    """Entitlements per extended resource (e.g. nvidia.com/gpu), summed over GPU classes."""
    out: dict[str, int] = {}
    classes = fleet.get("gpu_classes", {})
    for cls, n in (policy.get("entitlements") or {}).items():
        resource = classes.get(cls, {}).get("resource", "nvidia.com/gpu")
        out[resource] = out.get(resource, 0) + int(n)
    return out


SHARED_GPU_RESOURCE = "nvidia.com/gpu.shared"  # time-slicing and MPS replicas (renameByDefault)
DEFAULT_SHARING_REPLICAS = 4  # the fleet schema's default sharing_replicas
_REPLICATED = ("time-slicing", "mps")


def shared_gpu_limit(policy: Mapping[str, Any], fleet: Mapping[str, Any]) -> int:
    """The most `nvidia.com/gpu.shared` replicas a sharing tenant's entitlement can be held as:
    per entitled class, its GPUs times the most replicas any time-slicing or MPS pool of that
    class splits a GPU into. Placement counts a replica as 1/replicas of its node's GPU, so a
    quota of this size refuses at creation only what placement would refuse on every node, and a
    pod beyond its tenant's shares waits in no scheduler queue, retried and refused at every
    backoff. 0 for a tenant that may not share or a fleet without such pools of its classes."""
    if policy.get("allow_gpu_sharing") is not True:
        return 0
    replicas: dict[str, int] = {}
    for cluster in (fleet.get("clusters") or {}).values():
        for pool in (cluster.get("pools") or {}).values():
            if pool.get("sharing_strategy") in _REPLICATED:
                cls = str(pool.get("gpu_class"))
                n = int(pool.get("sharing_replicas", DEFAULT_SHARING_REPLICAS))
                replicas[cls] = max(replicas.get(cls, 0), n)
    return sum(int(n) * replicas.get(cls, 0) for cls, n in (policy.get("entitlements") or {}).items())


def tier_catalog() -> list[Obj]:
    """The PriorityClasses of the tier catalog (gpupaas-enterprise, -standard, -spot): placement
    renders every GPU workload with its tier's, and admission refuses any other, so each cluster a
    tenant is realized in needs them. Shared by every tenant of a tier: no tenant label, never
    deleted with a tenant."""
    return [
        {
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": TIER_PRIORITY_CLASS[tier], "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
            "value": value,
            "preemptionPolicy": "Never" if tier == "spot" else "PreemptLowerPriority",
            "globalDefault": False,
            "description": f"gpupaas {tier} tier",
        }
        for tier, value in TIER_PRIORITY.items()
    ]


def render(policy: Mapping[str, Any], fleet: Mapping[str, Any]) -> dict[str, list[Obj]]:
    """Kubernetes' own groups of the tenant's objects: every lifecycle group but Kueue's."""
    tenant = str(policy["name"])
    namespaces = [str(n) for n in policy.get("namespaces", [])]
    limits = gpu_limits(policy, fleet)
    if shares := shared_gpu_limit(policy, fleet):
        limits[SHARED_GPU_RESOURCE] = shares
    # A tenant that borrows (spot, allowing preemption) may hold more than its entitlement, lent by
    # Kueue and allowed by placement: capped here at its entitlement, the pods of a Job Kueue
    # admitted on borrowed quota were refused ("exceeded quota") while Kueue held that quota.
    # What it may borrow is bounded by the cohort's idle quota (Kueue) and decided per pod (PDP).
    capped = {} if tenant_borrows(str(policy.get("tier")), policy.get("allow_preemption")) else limits
    hard = {f"requests.{r}": str(n) for r, n in sorted(capped.items())}
    priority = f"gpupaas-tenant-{tenant}"
    return {
        "namespaces": [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(tenant, ns)} for ns in namespaces
        ],
        "quota": [
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": _meta(tenant, "gpupaas-gpu-quota", ns),
                "spec": {"hard": hard},
            }
            for ns in namespaces
        ],
        "limits": [
            {
                "apiVersion": "v1",
                "kind": "LimitRange",
                "metadata": _meta(tenant, "gpupaas-defaults", ns),
                "spec": {
                    "limits": [
                        {
                            "type": "Container",
                            "max": {r: str(n) for r, n in sorted(capped.items())},
                            # Explicit, since the API server defaults `default` to `max`: a
                            # container that names no GPU gets none, not the whole entitlement.
                            "default": {r: "0" for r in sorted(limits)},
                            "defaultRequest": {r: "0" for r in sorted(limits)},
                        }
                    ]
                },
            }
            for ns in namespaces
        ],
        "priority": [
            {
                "apiVersion": "scheduling.k8s.io/v1",
                "kind": "PriorityClass",
                "metadata": _meta(tenant, priority),
                "value": TIER_PRIORITY.get(str(policy.get("tier")), 1000),
                "preemptionPolicy": "Never" if policy.get("tier") == "spot" else "PreemptLowerPriority",
                "globalDefault": False,
            }
        ],
        "network": [
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": _meta(tenant, "gpupaas-tenant-isolation", ns),
                "spec": {
                    # Only the tenant's own namespaces may talk to it.
                    "podSelector": {},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {TENANT_LABEL: tenant}}}]}],
                },
            }
            for ns in namespaces
        ],
        "rbac": [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": _meta(tenant, "gpupaas-tenant-admins", ns),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": f"gpupaas:{tenant}"}
                ],
            }
            for ns in namespaces
        ],
    }


def key(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"


def stale(old: list[Obj], new: list[Obj]) -> list[Obj]:
    """The objects of `old` that `new` no longer has (by kind, namespace and name), newest first."""
    kept = {key(o) for o in new}
    return [o for o in reversed(old) if key(o) not in kept]

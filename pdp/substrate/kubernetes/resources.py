"""Which REST resource each kind of object is on the API server: kind -> (plural, namespaced).

Kubernetes' own kinds are listed here. A substrate whose objects are custom resources on
Kubernetes (Kueue's queues, the inference gateway's routes and pools) registers its kinds when
its module is imported (`register`), so the Kubernetes adapter imports no other substrate.
"""

from __future__ import annotations

from collections.abc import Mapping

RESOURCES: dict[str, tuple[str, bool]] = {
    "Namespace": ("namespaces", False),
    "ResourceQuota": ("resourcequotas", True),
    "LimitRange": ("limitranges", True),
    "PriorityClass": ("priorityclasses", False),
    "NetworkPolicy": ("networkpolicies", True),
    "RoleBinding": ("rolebindings", True),
    "Deployment": ("deployments", True),
    "Node": ("nodes", False),
    "ConfigMap": ("configmaps", True),
    "Service": ("services", True),
}


def register(table: Mapping[str, tuple[str, bool]]) -> None:
    """Add a substrate's kinds; a kind already known must keep its resource."""
    for kind, resource in table.items():
        known = RESOURCES.setdefault(kind, resource)
        if known != resource:
            raise ValueError(f"kind {kind} is already the resource {known}, not {resource}")


def resource(kind: str) -> tuple[str, bool]:
    """(plural, namespaced) of `kind`; a kind no imported substrate registered is an error."""
    try:
        return RESOURCES[kind]
    except KeyError:
        raise KeyError(
            f"no substrate registered the kind {kind!r} (pdp/substrate/kubernetes/resources.py)"
        ) from None

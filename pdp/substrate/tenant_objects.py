"""A tenant's objects on each Kubernetes cluster it is realized in, by lifecycle group: Kubernetes'
own (pdp/substrate/kubernetes/objects.py) and its Kueue queues (the "kueue" group,
pdp/substrate/kueue/objects.py), in the order onboarding applies them (and compensates and
offboarding deletes them in reverse).

Composed here, above both substrates, so that the arrows point one way: Kueue runs on the
Kubernetes adapter and reads Kubernetes workloads, and Kubernetes imports nothing of Kueue's
(`lint-imports`, contract `kubernetes-imports-no-other-substrate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pdp.substrate.kubernetes import objects as kubernetes
from pdp.substrate.kubernetes.objects import Obj
from pdp.substrate.kueue import objects as kueue

GROUPS = ("namespaces", "quota", "limits", "kueue", "priority", "network", "rbac")
# The groups rendered from the tenant's tier and entitlements, re-applied when its policy changes.
POLICY_GROUPS = ("quota", "kueue", "priority")


def render(policy: Mapping[str, Any], fleet: Mapping[str, Any]) -> dict[str, list[Obj]]:
    groups = {**kubernetes.render(policy, fleet), "kueue": kueue.tenant_objects(policy, fleet)}
    return {group: groups[group] for group in GROUPS}

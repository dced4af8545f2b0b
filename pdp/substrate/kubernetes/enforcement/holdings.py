"""What each tenant holds, node by node, for the per-class entitlement the extender asks the policy
about (`place_workload.held`; the policy maps each node's labels to its GPU class).

Quotas cap a tenant's GPUs per resource name, and every class of a vendor has the same resource
name: only the node a pod lands on says which class it uses. So the extender counts, per tenant,
the GPUs of its pods bound to nodes (from the pod watch), and the GPUs of pods it has allowed whose
binding the watch has not shown yet: the scheduler binds asynchronously and asks about the next pod
meanwhile, and a pod counted nowhere in that gap is how a burst would overrun a class. Such a pod
counts against every class it was allowed on until its binding shows (or `assume_seconds` pass).

A namespace's tenant is its `gpupaas.io/tenant` label, which the Kubernetes adapter sets and
tenants cannot change (namespaces are cluster-scoped); an unlabelled namespace counts alone.

Pure bookkeeping, fed by ClusterState's watches and tested without a server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pdp.substrate.kubernetes.enforcement.pods import metadata_of, read_pod_event
from pdp.substrate.kubernetes.enforcement.workloads import InvalidObject, gpu_requests
from pdp.substrate.labels import TENANT_LABEL

ASSUME_SECONDS = 10.0  # far above a binding's round trip; a pod re-filtered is re-counted at once
MAX_ALLOWED_SHAPES = 1024  # the intent schema's held[].on maxItems

Labels = Mapping[str, str]


class Holdings:
    """Tenant -> the GPUs its pods hold on each node, and the allowed pods not yet seen bound."""

    def __init__(
        self, assume_seconds: float = ASSUME_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._assume_seconds = assume_seconds
        self._clock = clock
        self._tenant_of: dict[str, str] = {}  # namespace -> its tenant label
        self._bound: dict[str, tuple[str, str, dict[str, int]]] = {}  # uid -> (namespace, node, GPUs)
        self._by_namespace: dict[str, set[str]] = {}  # namespace -> uids bound
        # uid -> (expiry, namespace, GPUs, the labels of the nodes it was allowed on)
        self._allowed: dict[str, tuple[float, str, dict[str, int], list[Labels]]] = {}

    # -- feeding ---------------------------------------------------------------------------------

    def replace_namespaces(self, namespaces: Iterable[Mapping[str, Any]]) -> None:
        self._tenant_of = {}
        for namespace in namespaces:
            self.apply_namespace("ADDED", namespace)

    def apply_namespace(self, event_type: str, namespace: Mapping[str, Any]) -> None:
        metadata = metadata_of(namespace)
        name = metadata.get("name")
        if not isinstance(name, str):
            return
        labels = metadata.get("labels")
        tenant = labels.get(TENANT_LABEL) if isinstance(labels, Mapping) else None
        if event_type == "DELETED" or not isinstance(tenant, str) or not tenant:
            self._tenant_of.pop(name, None)
        elif event_type in ("ADDED", "MODIFIED"):
            self._tenant_of[name] = tenant

    def replace_pods(self, pods: Iterable[Mapping[str, Any]]) -> None:
        self._bound, self._by_namespace = {}, {}
        for pod in pods:
            self.apply_pod("ADDED", pod)

    def apply_pod(self, event_type: str, pod: Mapping[str, Any]) -> None:
        event = read_pod_event(event_type, pod)
        if event is None:
            return
        self._unbind(event.uid)
        if event.gone:
            self._allowed.pop(event.uid, None)
            return
        if event.node is None:
            return
        self._allowed.pop(event.uid, None)  # bound: it counts on its node from now on
        try:
            gpus = gpu_requests(event.spec)
        except InvalidObject:
            return  # the API server stores only valid pods; nothing to count in one it would not
        if gpus:
            self._bound[event.uid] = (event.namespace, event.node, gpus)
            self._by_namespace.setdefault(event.namespace, set()).add(event.uid)

    def _unbind(self, uid: str) -> None:
        entry = self._bound.pop(uid, None)
        if entry is not None:
            uids = self._by_namespace.get(entry[0])
            if uids is not None:
                uids.discard(uid)
                if not uids:
                    del self._by_namespace[entry[0]]

    def allow(self, uid: str, namespace: str, gpus: Mapping[str, int], on: Iterable[Labels]) -> None:
        """The extender allowed pod `uid` (asking `gpus`) on nodes with these labels."""
        if uid in self._bound:
            return
        shapes = _distinct(on)
        if gpus and shapes:
            self._allowed[uid] = (self._clock() + self._assume_seconds, namespace, dict(gpus), shapes)
        else:
            self._allowed.pop(uid, None)

    # -- reading ---------------------------------------------------------------------------------

    def _namespaces_of(self, namespace: str) -> set[str]:
        tenant = self._tenant_of.get(namespace)
        if tenant is None:
            return {namespace}
        return {ns for ns, t in self._tenant_of.items() if t == tenant} | {namespace}

    def held(
        self,
        namespace: str,
        exclude_uid: str,
        labels_of: Callable[[Iterable[str]], Mapping[str, Labels]],
        project: Callable[[Labels], Labels] = dict,
    ) -> list[dict[str, Any]]:
        """`place_workload.held` for a pod of `namespace`: what its tenant holds, bound pods summed
        per node shape (labels as `project` keeps them), allowed pods each with its shapes."""
        namespaces = self._namespaces_of(namespace)
        by_node: dict[str, dict[str, int]] = {}
        for ns in namespaces:
            for uid in self._by_namespace.get(ns, ()):
                if uid == exclude_uid:
                    continue
                _, node, gpus = self._bound[uid]
                total = by_node.setdefault(node, {})
                for resource, n in gpus.items():
                    total[resource] = total.get(resource, 0) + n
        by_shape: dict[frozenset[tuple[str, str]], tuple[Labels, dict[str, int]]] = {}
        for node, labels in labels_of(by_node).items():
            shown = project(labels)
            key = frozenset(shown.items())
            _, total = by_shape.setdefault(key, (shown, {}))
            for resource, n in by_node[node].items():
                total[resource] = total.get(resource, 0) + n
        held: list[dict[str, Any]] = [
            {"resources": total, "on": [dict(shown)]} for shown, total in by_shape.values()
        ]
        now = self._clock()
        for uid, (expiry, ns, gpus, shapes) in list(self._allowed.items()):
            if expiry <= now:
                del self._allowed[uid]
            elif uid != exclude_uid and ns in namespaces:
                held.append({"resources": dict(gpus), "on": [dict(project(s)) for s in shapes]})
        return held


def _distinct(shapes: Iterable[Labels]) -> list[Labels]:
    seen: dict[frozenset[tuple[str, str]], Labels] = {}
    for labels in shapes:
        seen.setdefault(frozenset(labels.items()), labels)
        if len(seen) == MAX_ALLOWED_SHAPES:
            break
    return list(seen.values())

"""The clusters the lifecycle realizes tenants in: one adapter per cluster of the fleet.

A worker given a clusters-access document (pdp/config/clusters.py) keeps one adapter per
cluster and realizes each tenant only in the clusters its policy allows (the create_tenant
decision's eligible_clusters), each deployment in one cluster (`choose`). A worker without one
(dry run, or one --kubeconfig) has one adapter standing for the whole fleet, named SINGLE here.

An unreachable cluster never makes a workflow skip it: pdp/lifecycle/services/cluster_reach.py
waits, records why the workflow is paused and resumes when the cluster answers; `Clusters` keeps
the pauses it shows (GET /v1/clusters).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pdp.substrate.base import Adapter

SINGLE = ""


@dataclass(frozen=True)
class Pause:
    """A workflow waiting for an unreachable cluster (what GET /v1/clusters shows)."""

    cluster: str
    operation: str
    tenant: str
    workflow_id: str
    reason: str
    since: str


class NoSingleCluster:
    """The adapter of a multi-cluster worker where code asks for one without naming a cluster:
    carving a dedicated pool out of shared nodes is done in one cluster, and across clusters it
    is not supported yet. Refuses loudly rather than act on an arbitrary cluster."""

    mode = "kubernetes"

    def _refuse(self, *_: Any) -> Any:
        raise RuntimeError(
            "this worker manages several clusters (--clusters): dedicated pool carving acts on one "
            "cluster and is not supported across clusters yet"
        )

    apply = delete = exists = gone = nodes = occupancy = _refuse


class Clusters:
    def __init__(self, adapters: Mapping[str, Adapter], default: Adapter) -> None:
        self.adapters = dict(adapters)
        self.default = default
        self._paused: dict[tuple[str, str, str], Pause] = {}
        self._lock = threading.Lock()
        # Pauses ended so far: a step with a deadline of its own (waiting for objects to be gone)
        # starts it again after a pause, so the time a cluster was away never runs it out.
        self.resumed = 0

    @property
    def managed(self) -> bool:
        """One adapter per cluster (else one adapter stands for every cluster)."""
        return bool(self.adapters)

    def names(self) -> list[str]:
        return sorted(self.adapters) if self.managed else [SINGLE]

    def among(self, eligible: Iterable[str]) -> list[str]:
        """The clusters of `eligible` this worker realizes in (SINGLE when not managed)."""
        if not self.managed:
            return [SINGLE]
        return sorted({str(c) for c in eligible} & set(self.adapters))

    def adapter(self, cluster: str) -> Adapter:
        if cluster == SINGLE:
            return self.default
        try:
            return self.adapters[cluster]
        except KeyError:
            raise RuntimeError(f"cluster {cluster!r} is not one this worker reaches (--clusters)") from None

    def paused(self) -> list[Pause]:
        with self._lock:
            return sorted(self._paused.values(), key=lambda p: (p.since, p.cluster))

    def set_pause(self, token: tuple[str, str, str], pause: Pause | None) -> None:
        with self._lock:
            if pause is None:
                if self._paused.pop(token, None) is not None:
                    self.resumed += 1
            else:
                self._paused[token] = pause

    def close(self) -> None:
        for adapter in self.adapters.values():
            close = getattr(adapter, "close", None)
            if close is not None:
                close()


def label(cluster: str, key: str) -> str:
    """An object's key with its cluster ("eu-west:Namespace//acme-prod"); the key alone in a
    single-cluster worker."""
    return f"{cluster}:{key}" if cluster else key


# Choosing the cluster of a deployment -----------------------------------------------------------


def free_gpus(
    fleet: Mapping[str, Any],
    tenant: str,
    gpu_class: str,
    placed: Iterable[tuple[str, int]],
) -> dict[str, int]:
    """GPUs of the class free per cluster (pure): the shared pools' and the tenant's dedicated
    pools' inventory, less the GPUs of running deployments placed there (`placed`: (cluster,
    GPUs) of each). The lifecycle places only what it accounts for."""
    out: dict[str, int] = {}
    for name, cluster in (fleet.get("clusters") or {}).items():
        total = sum(
            int(p.get("nodes", 0)) * int(p.get("gpus_per_node", 0))
            for p in (cluster.get("pools") or {}).values()
            if p.get("gpu_class") == gpu_class
            and (p.get("isolation") == "shared" or p.get("tenant") == tenant)
        )
        out[str(name)] = total
    for cluster, gpus in placed:
        if cluster in out:
            out[cluster] -= gpus
    return {c: max(0, n) for c, n in out.items()}


def rank(candidates: list[str], free: Mapping[str, int], needed: int) -> list[str]:
    """The candidate clusters in order of preference (pure): those where the deployment fits, in
    the policy's order; then the others, most free GPUs first (the scheduler queues it there)."""
    fits = [c for c in candidates if free.get(c, 0) >= needed]
    rest = sorted(
        (c for c in candidates if c not in fits), key=lambda c: (-free.get(c, 0), candidates.index(c))
    )
    return fits + rest

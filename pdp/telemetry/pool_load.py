"""Where deployments run and how loaded the fleet's pools are, from DCGM metrics in Prometheus.

A pool's load is the share of its GPUs (the fleet's nodes x GPUs per node) a pod holds now: the
GPUs dcgm-exporter maps to a pod on the pool's nodes (`node_names`). A deployment runs in the pools
of the nodes its pods' GPUs are on. What an SLA escalation moves a breaching deployment away from
and towards (pdp/lifecycle/workflows/sla_escalation.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pdp.config.index import fleet_index
from pdp.telemetry.prometheus import PrometheusClient, finite
from pdp.telemetry.sla import with_deployment

HELD = with_deployment('DCGM_FI_DEV_GPU_UTIL{namespace!=""}')


@dataclass
class PoolLoad:
    load: dict[str, float] = field(default_factory=dict)  # pool -> fraction of its GPUs held
    held: dict[str, int] = field(default_factory=dict)  # pool -> GPUs held
    placed: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (namespace, deployment) -> pools

    def pools_of(self, namespace: str, deployment: str) -> list[str]:
        return sorted(self.placed.get((namespace, deployment), set()))


def pool_load(prometheus: PrometheusClient, fleet: dict[str, Any]) -> PoolLoad:
    index = fleet_index(fleet)
    nodes: dict[str, list[str]] = index["nodes"]
    capacity = {pool: gpus for by_pool in index["gpus"].values() for pool, gpus in by_pool.items()}
    out = PoolLoad(held=dict.fromkeys(capacity, 0))
    query = f"count by (Hostname, namespace, deployment) ({HELD})"
    for s in finite(prometheus.query(query)):
        node = s.labels.get("Hostname", "")
        if node not in nodes:
            continue  # a node the fleet does not name belongs to no pool
        pool = nodes[node][1]
        out.held[pool] = out.held.get(pool, 0) + int(s.value)
        key = (s.labels.get("namespace", ""), s.labels.get("deployment", ""))
        out.placed.setdefault(key, set()).add(pool)
    out.load = {p: round(min(1.0, out.held[p] / capacity[p]), 4) if capacity[p] else 1.0 for p in capacity}
    return out

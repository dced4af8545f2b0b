"""The fleet the lifecycle's bundle carries: the operator's fleet document (`--fleet`, only read)
with the dedicated pools the lifecycle carved out of shared capacity (pure).

A carving moves whole nodes of a shared pool into a new dedicated pool of one tenant: the source
pool loses the nodes, the dedicated pool has them. The operator's document is read afresh on
every rebuild, so capacity added there (more nodes in a shared pool) is seen without a restart.
A dedicated pool is only among the clusters' pools while its tenant is in the bundle: the policies
refuse a pool naming a tenant the bundle does not hold (TENANT_UNKNOWN), e.g. after the tenant was
offboarded, or while the tenant being onboarded is not published yet (its carved nodes are out of
the shared pool already, they are tainted). Such a pool is set aside under the fleet's `awaiting`
(cluster -> pool name -> pool), which placement and admission never read: only the onboarding of
the tenant it waits for does (gpupaas.tenancy), so a tenant whose pool the operator racked and
declared before it signed is onboarded onto that pool, without approval to carve another.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text())["fleet"])


def effective(
    base: Mapping[str, Any], carvings: Iterable[Mapping[str, Any]], tenants: Iterable[str]
) -> tuple[dict[str, Any], list[str]]:
    """(the fleet with the carvings applied, only the dedicated pools of `tenants` among its
    clusters' pools and the others under `awaiting`, notes on what was set aside)."""
    fleet = copy.deepcopy(dict(base))
    fleet.pop("awaiting", None)  # the lifecycle's own (a fleet document declares pools in clusters)
    known = set(tenants)
    notes: list[str] = []
    clusters = fleet.get("clusters", {})
    for carving in carvings:
        cluster = clusters.get(carving["cluster"])
        source = (cluster or {}).get("pools", {}).get(carving["source_pool"])
        if cluster is None or source is None:
            notes.append(
                f"carved pool {carving['pool']!r}: source pool {carving['source_pool']!r} of cluster "
                f"{carving['cluster']!r} is no longer in the fleet document"
            )
            continue
        taken = len(carving["nodes"])
        source["nodes"] = max(0, int(source.get("nodes", 0)) - taken)
        pool = {
            "gpu_class": carving["gpu_class"],
            "isolation": "dedicated",
            "tenant": carving["tenant"],
            "sharing_strategy": source.get("sharing_strategy", "none"),
            "nodes": taken,
            "gpus_per_node": int(source["gpus_per_node"]),
        }
        # How the source shares its GPUs goes with its nodes (pdp/substrate/gpu_operator).
        pool.update({k: source[k] for k in ("sharing_replicas", "mig_devices") if k in source})
        if "node_names" in source:
            # Named nodes move with the carving (admission judges a pod naming one by its pool);
            # nodes the document does not name (the cluster has more) leave only counts.
            carved, names = set(carving["nodes"]), list(source["node_names"])
            if carved <= set(names):
                source["node_names"] = [n for n in names if n not in carved]
                pool["node_names"] = sorted(carved)
            if not carved <= set(names) or len(source["node_names"]) != source["nodes"]:
                del source["node_names"]
        cluster["pools"][carving["pool"]] = pool
    awaiting: dict[str, dict[str, Any]] = {}
    for cluster_name, cluster in clusters.items():
        pools = cluster.get("pools") or {}
        for pool_name in sorted(pools):
            pool = pools[pool_name]
            if pool.get("isolation") == "dedicated" and pool.get("tenant") not in known:
                awaiting.setdefault(cluster_name, {})[pool_name] = pools.pop(pool_name)
                notes.append(
                    f"dedicated pool {pool_name!r} of cluster {cluster_name!r} set aside: its tenant "
                    f"{pool.get('tenant')!r} is not in the bundle"
                )
    if awaiting:
        fleet["awaiting"] = awaiting
    return fleet, notes


def write(path: Path, fleet: Mapping[str, Any]) -> None:
    """Replace the fleet file atomically (a bundle build never reads half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump({"fleet": dict(fleet)}, sort_keys=False))
    os.replace(tmp, path)

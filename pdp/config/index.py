"""The fleet index the policies read instead of scanning every pool on every decision.

`pools[class][jurisdiction][isolation][sharing strategy]` lists the [cluster, pool] pairs;
`dedicated[tenant]` lists the pools dedicated to a tenant; `nodes[name]` is the [cluster, pool] of
each node the fleet names (pools' `node_names`), so admission looks a named node up by name in a
10,000-node fleet instead of scanning it. `gpus[cluster][pool]` is the GPUs of each pool (nodes x
GPUs per node), which a CAPACITY_EXCEEDED message names; `shared_capacity[class]
[jurisdiction][sharing strategy][cluster]` the GPUs of a cluster's shared pools of that key, from
which a shared tenant's decision reads its clusters and capacity by cluster instead of pool by
pool, and `dedicated_capacity[tenant][class][jurisdiction][sharing strategy][cluster]` the same
for the pools dedicated to each tenant; `jurisdictions` lists the fleet's jurisdictions, which
every residency decision needs, and `regions[region]` the jurisdiction of each region; `labels`
maps each GPU class's node label ("<key>=<value>") to the class and `label_keys` lists those keys,
which every workload decision reads to classify its node selector. `namespaces[ns]` is the tenant
of each namespace (the first by name where two claim it, a conflict the build refuses), which every
workload decision looks up (computing it took 40-60 ms of each admission with 1,000 tenants). The
policies compute the same index from the fleet when the bundle does not carry one
(gpupaas.lib.pool_index), and a test holds the two equal.
"""

from __future__ import annotations

from typing import Any


def namespace_index(tenants: dict[str, Any]) -> dict[str, str]:
    owners: dict[str, str] = {}
    for name, tenant in sorted(tenants.items()):
        for namespace in tenant.get("namespaces", ()):
            owners.setdefault(namespace, name)
    return owners


def fleet_index(fleet: dict[str, Any]) -> dict[str, Any]:
    pools: dict[str, Any] = {}
    dedicated: dict[str, list[str]] = {}
    nodes: dict[str, list[str]] = {}
    gpus: dict[str, dict[str, Any]] = {}
    shared_capacity: dict[str, Any] = {}
    dedicated_capacity: dict[str, Any] = {}
    jurisdictions: set[str] = set()
    regions: dict[str, str] = {}
    for cluster_name, cluster in sorted(fleet.get("clusters", {}).items()):
        jurisdictions.add(cluster["jurisdiction"])
        regions[cluster["region"]] = cluster["jurisdiction"]
        for pool_name, pool in sorted((cluster.get("pools") or {}).items()):
            gpus.setdefault(cluster_name, {})[pool_name] = pool["nodes"] * pool["gpus_per_node"]
            leaf = (
                pools.setdefault(pool["gpu_class"], {})
                .setdefault(cluster["jurisdiction"], {})
                .setdefault(pool["isolation"], {})
                .setdefault(pool.get("sharing_strategy", "none"), [])
            )
            leaf.append([cluster_name, pool_name])
            if pool["isolation"] == "shared":
                by_cluster = (
                    shared_capacity.setdefault(pool["gpu_class"], {})
                    .setdefault(cluster["jurisdiction"], {})
                    .setdefault(pool.get("sharing_strategy", "none"), {})
                )
                by_cluster[cluster_name] = by_cluster.get(cluster_name, 0) + gpus[cluster_name][pool_name]
            if pool["isolation"] == "dedicated" and "tenant" in pool:
                dedicated.setdefault(pool["tenant"], []).append(pool_name)
                by_cluster = (
                    dedicated_capacity.setdefault(pool["tenant"], {})
                    .setdefault(pool["gpu_class"], {})
                    .setdefault(cluster["jurisdiction"], {})
                    .setdefault(pool.get("sharing_strategy", "none"), {})
                )
                by_cluster[cluster_name] = by_cluster.get(cluster_name, 0) + gpus[cluster_name][pool_name]
            for node in pool.get("node_names", ()):
                # A name in two pools is a fleet violation (NODE_NAME_CONFLICT) the build refuses;
                # the first pool in name order is the one the policies' own index picks too.
                nodes.setdefault(node, [cluster_name, pool_name])
    return {
        "pools": pools,
        "dedicated": dedicated,
        "nodes": nodes,
        "gpus": gpus,
        "shared_capacity": shared_capacity,
        "dedicated_capacity": dedicated_capacity,
        "jurisdictions": sorted(jurisdictions),
        "regions": regions,
        **label_index(fleet.get("gpu_classes", {})),
    }


def label_index(gpu_classes: dict[str, Any]) -> dict[str, Any]:
    """`labels["<key>=<value>"]` is the GPU class a node label designates; `label_keys` the keys."""
    labels = {f"{gc['node_label']['key']}={gc['node_label']['value']}": c for c, gc in gpu_classes.items()}
    keys = sorted({gc["node_label"]["key"] for gc in gpu_classes.values()})
    return {"labels": labels, "label_keys": keys}

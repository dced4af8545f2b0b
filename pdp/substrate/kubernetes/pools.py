"""Dedicated pools carved out of shared capacity (pure): which nodes, and the Node objects that
make them a tenant's pool or give them back.

A dedicated pool is whole nodes of a shared pool, relabelled and tainted the way the policies and
the workload objects expect (policies/gpupaas/lib: `gpupaas.io/dedicated-tenant=<tenant>` and the
taint `gpupaas.io/dedicated=<tenant>:NoSchedule`; workload.py: `gpupaas.io/pool In <pools>`). The
carving takes, for every GPU class the tenant is entitled to, enough nodes for its entitlement
from one shared pool of the class in a cluster its residency allows (whole GPUs first: a pool
without time-slicing/MPS/MIG; a tenant that forbids sharing gets no other), preferring the nodes
that host the fewest other deployments. Those deployments must give way: the lifecycle asks the
PDP to preempt them, and tries the next candidate when it refuses.

The Node objects are applied with server-side apply: the labels are the platform's own fields,
and `spec.taints` is an atomic list, so the taints the node had stay in the applied list and are
applied again, unchanged, when the node is given back.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pdp.substrate.kubernetes.objects import Obj
from pdp.substrate.labels import DEDICATED_TAINT, DEDICATED_TENANT_LABEL, POOL_LABEL, REGION_LABEL

# How a carving is asked for: the approval reason of a dedicated tenant without a pool.
PROVISIONING_REASON = "DEDICATED_POOL_PROVISIONING"


def pool_name(tenant: str, gpu_class: str) -> str:
    """`<tenant>-<class>`, lowercased: a DNS-1123 label (pool names are, in the fleet schema) and a
    label value; shortened with a hash when longer than 63 characters."""
    cls = "".join(ch if ch.isalnum() else "-" for ch in gpu_class.lower()).strip("-")
    name = f"{tenant}-{cls}"
    if len(name) > 63:
        name = f"{name[:54].rstrip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return name


def taint(tenant: str) -> dict[str, str]:
    return {"key": DEDICATED_TAINT, "value": tenant, "effect": "NoSchedule"}


def nominal_nodes(fleet: Mapping[str, Any], carvings: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The nodes as the fleet describes them, for an adapter that sees no cluster (dry run): the
    pool's `node_names`, else `<cluster>-<pool>-<i>`, for each shared pool, labelled with its pool
    and region, the carved ones as the carvings left them. `fleet` is the fleet with the carvings applied."""
    carved = {n: c for c in carvings for n in c["nodes"]}
    out = []
    for cname, cluster in sorted((fleet.get("clusters") or {}).items()):
        for pname, pool in sorted((cluster.get("pools") or {}).items()):
            if pool.get("isolation") != "shared":
                continue
            if pool.get("node_names"):  # the fleet names its nodes: those, as the carvings left them
                for name in pool["node_names"]:
                    out.append(_node(str(name), pname, str(cluster["region"]), None))
                continue
            i, named = 0, 0
            while named < int(pool.get("nodes", 0)):
                i += 1
                name = f"{cname}-{pname}-{i}"
                if name in carved:
                    continue
                named += 1
                out.append(_node(name, pname, str(cluster["region"]), None))
    for name, c in sorted(carved.items()):
        region = str(fleet.get("clusters", {}).get(c["cluster"], {}).get("region", ""))
        out.append(_node(name, str(c["pool"]), region, str(c["tenant"])))
    return out


def _node(name: str, pool: str, region: str, tenant: str | None) -> dict[str, Any]:
    labels = {POOL_LABEL: pool, REGION_LABEL: region}
    if tenant:
        labels[DEDICATED_TENANT_LABEL] = tenant
    return {"name": name, "labels": labels, "taints": [taint(tenant)] if tenant else []}


def _usable_strategies(policy: Mapping[str, Any]) -> tuple[str, ...]:
    return ("none", "time-slicing", "mps", "mig") if policy.get("allow_gpu_sharing") else ("none",)


def _jurisdiction_allowed(residency: str, jurisdiction: str) -> bool:
    # Mirrors lib.jurisdiction_allowed: 'any', or '<jurisdiction>-only'.
    return residency == "any" or (
        residency.endswith("-only") and residency.removesuffix("-only").upper() == jurisdiction
    )


def _free(node: Mapping[str, Any], pool: str, region: str, claimed: set[str]) -> bool:
    labels = node.get("labels") or {}
    return (
        labels.get(POOL_LABEL) == pool
        and labels.get(REGION_LABEL, region) == region
        and DEDICATED_TENANT_LABEL not in labels
        and not any(t.get("key") == DEDICATED_TAINT for t in node.get("taints") or [])
        and node["name"] not in claimed
    )


def candidates(
    tenant: str,
    policy: Mapping[str, Any],
    gpu_class: str,
    fleet: Mapping[str, Any],
    nodes: Iterable[Mapping[str, Any]],
    occupancy: Mapping[str, Sequence[Mapping[str, Any]]],
    claimed: Iterable[str] = (),
    refused: Iterable[tuple[str, str]] = (),
) -> tuple[list[dict[str, Any]], list[str]]:
    """(the carvings that would give the tenant a dedicated pool of the class, best first; why
    each shared pool of the class the residency allows cannot). `occupancy`: node name -> the
    deployments running there ({tenant, deployment}); `claimed`: nodes other carvings hold;
    `refused`: (tenant, deployment) the PDP does not let this tenant preempt: their nodes are
    not free."""
    blocked = set(refused)
    taken = set(claimed) | {
        str(node)
        for node, there in occupancy.items()
        if any((str(o["tenant"]), str(o["deployment"])) in blocked for o in there)
    }
    wanted = int((policy.get("entitlements") or {}).get(gpu_class, 0))
    residency = str(policy.get("data_residency", "any"))
    strategies = _usable_strategies(policy)
    pool_nodes = list(nodes)
    out: list[dict[str, Any]] = []
    problems: list[str] = []
    for cname, cluster in sorted((fleet.get("clusters") or {}).items()):
        if not _jurisdiction_allowed(residency, str(cluster.get("jurisdiction", ""))):
            continue
        region = str(cluster["region"])
        for pname, pool in sorted((cluster.get("pools") or {}).items()):
            strategy = str(pool.get("sharing_strategy", "none"))
            if pool.get("isolation") != "shared" or pool.get("gpu_class") != gpu_class:
                continue
            if strategy not in strategies:
                continue
            per_node = int(pool["gpus_per_node"])
            needed = max(1, math.ceil(wanted / per_node))
            free = [n for n in pool_nodes if _free(n, pname, region, taken)]
            left = min(len(free), int(pool.get("nodes", 0)))
            if left < needed:
                problems.append(
                    f"pool {pname!r} of cluster {cname!r} has {left} free node(s) of the {needed} needed"
                )
                continue
            free.sort(key=lambda n: (len(occupancy.get(str(n["name"]), [])), str(n["name"])))
            chosen = free[:needed]
            occupants = sorted(
                {
                    (str(o["tenant"]), str(o["deployment"]))
                    for n in chosen
                    for o in occupancy.get(str(n["name"]), [])
                    if o["tenant"] != tenant
                }
            )
            out.append(
                {
                    "pool": pool_name(tenant, gpu_class),
                    "tenant": tenant,
                    "cluster": cname,
                    "region": region,
                    "source_pool": pname,
                    "gpu_class": gpu_class,
                    "gpus_per_node": per_node,
                    "sharing_strategy": strategy,
                    "nodes": sorted(str(n["name"]) for n in chosen),
                    "before": {
                        str(n["name"]): {
                            "labels": {POOL_LABEL: pname},
                            "taints": [dict(t) for t in n.get("taints") or []],
                        }
                        for n in chosen
                    },
                    "occupants": [{"tenant": t, "deployment": d} for t, d in occupants],
                }
            )
    if not out and not problems:
        problems.append(
            f"no shared pool of {gpu_class} with sharing [{', '.join(strategies)}] in data_residency "
            f"{residency}"
        )
    out.sort(
        key=lambda c: (len(c["occupants"]), c["sharing_strategy"] != "none", c["cluster"], c["source_pool"])
    )
    return out, problems


def shortfall(tenant: str, gpu_class: str, wanted: int, problems: Iterable[str]) -> str:
    """The reason an operator reads while the tenant waits for capacity."""
    return (
        f"no capacity for a dedicated {gpu_class} pool of {wanted} GPU(s) for tenant {tenant!r}: "
        + "; ".join(problems)
    )


def carve(node: str, before: Mapping[str, Any], tenant: str, pool: str) -> Obj:
    """The Node as the tenant's dedicated pool: its pool label, the dedicated-tenant label, and
    the dedicated taint added to the taints it had."""
    kept = [dict(t) for t in before.get("taints", []) if t.get("key") != DEDICATED_TAINT]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node, "labels": {POOL_LABEL: pool, DEDICATED_TENANT_LABEL: tenant}},
        "spec": {"taints": [*kept, taint(tenant)]},
    }


def restore(node: str, before: Mapping[str, Any]) -> Obj:
    """The Node given back: its pool label and taints as they were; the dedicated label and taint
    go (server-side apply drops the fields this manager no longer sets)."""
    obj: Obj = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node, "labels": dict(before.get("labels", {}))},
    }
    if before.get("taints"):
        obj["spec"] = {"taints": [dict(t) for t in before["taints"]]}
    return obj

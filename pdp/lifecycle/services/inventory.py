"""What `/v1/capacity` shows per region, GPU class and pool kind (pure).

An operator sees every pool of the fleet the bundle carries, the dedicated ones with their
owner. A tenant sees what its policy lets it use and nothing else: the pools of its entitled
classes in the regions its residency allows, with the sharing strategies it may use, and of the
isolation it has (its own dedicated pools, or the shared ones), mirroring
`gpupaas.lib.eligible_pools`; never another tenant's dedicated pool (tests hold the view equal to
the PDP's eligible clusters).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pdp.lifecycle.services import capacity

STRATEGIES = ("none", "time-slicing", "mps", "mig")
# What a tenant is shown of a pool it may use (its owner is itself or nobody).
TENANT_FIELDS = ("region", "cluster", "pool", "gpu_class", "kind", "sharing_strategy", "nodes", "gpus")


def pools(fleet: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every pool: where it is, its class, kind (shared or dedicated), owner, sharing, size."""
    out = []
    for cname, cluster in sorted((fleet.get("clusters") or {}).items()):
        for pname, pool in sorted((cluster.get("pools") or {}).items()):
            nodes, per_node = int(pool.get("nodes", 0)), int(pool.get("gpus_per_node", 0))
            out.append(
                {
                    "region": str(cluster["region"]),
                    "jurisdiction": str(cluster["jurisdiction"]),
                    "cluster": cname,
                    "pool": pname,
                    "gpu_class": str(pool["gpu_class"]),
                    "kind": str(pool["isolation"]),
                    "owner": pool.get("tenant"),
                    "sharing_strategy": str(pool.get("sharing_strategy", "none")),
                    "nodes": nodes,
                    "gpus": nodes * per_node,
                }
            )
    return out


def _allowed(residency: str, jurisdiction: str) -> bool:
    # lib.jurisdiction_allowed: 'any', or '<jurisdiction>-only'
    return residency == "any" or (
        residency.endswith("-only") and residency.removesuffix("-only").upper() == jurisdiction
    )


def usable(policy: Mapping[str, Any], fleet: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pools the tenant's policy lets it use (lib.eligible_pools over its entitled classes and
    usable sharing strategies)."""
    name = str(policy["name"])
    classes = set(policy.get("entitlements") or {})
    strategies = STRATEGIES if policy.get("allow_gpu_sharing") is True else ("none",)
    isolation = str(policy.get("isolation"))
    out = []
    for row in pools(fleet):
        if (
            row["gpu_class"] in classes
            and _allowed(str(policy.get("data_residency", "")), row["jurisdiction"])
            and row["sharing_strategy"] in strategies
            and row["kind"] == isolation
            and (isolation == "shared" or row["owner"] == name)
        ):
            out.append(row)
    return out


def by_region(rows: Iterable[Mapping[str, Any]], with_owner: bool) -> list[dict[str, Any]]:
    """GPUs and nodes per region, GPU class and pool kind (and owner of a dedicated pool)."""
    groups: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for row in rows:
        owner = str(row["owner"] or "") if with_owner else ""
        key = (str(row["region"]), str(row["gpu_class"]), str(row["kind"]), owner)
        group = groups.setdefault(
            key,
            {"region": key[0], "gpu_class": key[1], "kind": key[2], "gpus": 0, "nodes": 0, "pools": []},
        )
        if with_owner and owner:
            group["owner"] = owner
        group["gpus"] += int(row["gpus"])
        group["nodes"] += int(row["nodes"])
        group["pools"].append(f"{row['cluster']}/{row['pool']}")
    return [groups[k] for k in sorted(groups)]


def tenant_view(
    record: Mapping[str, Any], fleet: Mapping[str, Any], deployments: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    """A tenant's capacity: what its policy lets it use per region, class and pool kind, its
    entitlements and usage, and its own queued deployments."""
    policy = record["policy"]
    name = str(record["name"])
    rows = usable(policy, fleet)
    own = [d for d in deployments if d["tenant"] == name]
    usage: dict[str, int] = {}
    for d in own:
        if d["state"] == "running":
            cls = str(d["spec"]["gpu_class"])
            usage[cls] = usage.get(cls, 0) + capacity.gpus(d["spec"])
    return {
        "tenant": name,
        "isolation": policy.get("isolation"),
        "data_residency": policy.get("data_residency"),
        "regions": sorted({r["region"] for r in rows}),
        "entitlements": dict(policy.get("entitlements") or {}),
        "usage": usage,
        "capacity": by_region(rows, with_owner=False),
        "pools": [{k: r[k] for k in TENANT_FIELDS} for r in rows],
        "queue": [
            {"deployment": d["name"], "gpus": capacity.gpus(d["spec"]), "queued_at": d.get("queued_at")}
            for d in own
            if d["state"] == "queued"
        ],
    }

"""Slurm accounting objects rendered from tenant policy (pure): QOS per tier, and per tenant an
account with its associations.

Objects have the shape the lifecycle's adapters take (`apiVersion`, `kind`, `metadata.name`,
`spec`), and each tenant object sits in the lifecycle group of the same concern, so onboarding,
quota and SLA changes and offboarding reach Slurm through the groups they already apply:

- `namespaces`: the account (the tenant's container, created first and removed last);
- `kueue`: its associations, Slurm's counterpart of a ClusterQueue: the GPU limits
  (`GrpTRES=gres/gpu:<type>=N` from the entitlements), the QOS of its tier, and one association
  per user and partition the tenant may use (residency, isolation, entitled classes, sharing).

QOS follow the preemption policy (policies/gpupaas/preemption): a QOS preempts another exactly when
its tier ranks above the other's and the other's tenants allow preemption. Each tier therefore has
a QOS for tenants that allow preemption (`-preemptible`, in the Preempt lists of the tiers above,
requeued when preempted) and one for tenants that do not (in no Preempt list: never preempted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pdp.substrate.slurm.fleet import Partition, gres_type, partitions

API_VERSION = "slurm.gpupaas.io/v1"
TENANT_LABEL = "gpupaas.io/tenant"
# The tiers of policies/gpupaas/lib/lib.rego (`tiers`): rank decides who may preempt whom.
# tests/substrate/slurm/test_render.py checks this table against the policy.
TIER_RANK = {"enterprise": 3, "standard": 2, "spot": 1}
QOS_PRIORITY_STEP = 1000
# Lifecycle group -> the kinds of this substrate in it.
GROUP_KINDS = {"namespaces": ("SlurmAccount",), "kueue": ("SlurmAssociations",)}

Obj = dict[str, Any]


def qos_name(tier: str, preemptible: bool) -> str:
    return f"gpupaas-{tier}-preemptible" if preemptible else f"gpupaas-{tier}"


def tenant_qos(policy: Mapping[str, Any]) -> str:
    return qos_name(str(policy["tier"]), policy.get("allow_preemption") is True)


def _obj(kind: str, name: str, spec: Mapping[str, Any], tenant: str | None = None) -> Obj:
    meta: dict[str, Any] = {"name": name}
    if tenant:
        meta["labels"] = {TENANT_LABEL: tenant}
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": dict(spec)}


def qos_objects() -> list[Obj]:
    """The platform's QOS, shared by every tenant (not removed with one)."""
    out = []
    # Lowest rank first: a Preempt list may only name QOS that exist.
    for tier, rank in sorted(TIER_RANK.items(), key=lambda item: item[1]):
        victims = sorted(qos_name(other, True) for other, r in TIER_RANK.items() if r < rank)
        for preemptible in (False, True):
            spec: dict[str, Any] = {
                "priority": rank * QOS_PRIORITY_STEP,
                "preempt": victims,
                "preempt_mode": "requeue" if preemptible else "cluster",
            }
            out.append(_obj("SlurmQos", qos_name(tier, preemptible), spec))
    return out


def _jurisdiction_allowed(residency: str, jurisdiction: str) -> bool:
    # lib.jurisdiction_allowed: "any", or "<j>-only" for jurisdiction J.
    if residency == "any":
        return True
    return residency.endswith("-only") and residency[: -len("-only")].upper() == jurisdiction


def allowed_partitions(policy: Mapping[str, Any], fleet: Mapping[str, Any]) -> list[Partition]:
    """The partitions whose pools the tenant's policy admits (lib.eligible_pools over its entitled
    classes and the sharing strategies it may use). job_submit.lua asks the PDP for every job all
    the same; these associations are what still holds if a job ever got past it."""
    entitled = {str(c) for c, n in (policy.get("entitlements") or {}).items() if int(n) > 0}
    strategies = {"none", "time-slicing", "mps", "mig"} if policy.get("allow_gpu_sharing") else {"none"}
    dedicated = policy.get("isolation") == "dedicated"
    return [
        p
        for p in partitions(fleet)
        if p.gpu_class in entitled
        and p.sharing in strategies
        and _jurisdiction_allowed(str(policy.get("data_residency", "")), p.jurisdiction)
        and (
            (dedicated and p.isolation == "dedicated" and p.tenant == policy["name"])
            or (not dedicated and p.isolation == "shared")
        )
    ]


def grp_tres(policy: Mapping[str, Any]) -> dict[str, int]:
    """Association GPU limits from the entitlements: one per GPU type, and the untyped total, so a
    job that names no type is limited too."""
    limits = {
        f"gres/gpu:{gres_type(str(c))}": int(n) for c, n in sorted((policy.get("entitlements") or {}).items())
    }
    return {"gres/gpu": sum(limits.values()), **limits}


def render(policy: Mapping[str, Any], fleet: Mapping[str, Any], users: Sequence[str]) -> dict[str, list[Obj]]:
    """The tenant's Slurm objects by lifecycle group. `users`: the Unix users who submit as the
    tenant (a site's identity mapping; tenant policy names none)."""
    tenant = str(policy["name"])
    account = _obj(
        "SlurmAccount",
        tenant,
        {"description": str(policy.get("display_name") or tenant), "organization": tenant},
        tenant,
    )
    associations = _obj(
        "SlurmAssociations",
        tenant,
        {
            "account": tenant,
            "qos": tenant_qos(policy),
            "grp_tres": grp_tres(policy),
            "partitions": [p.name for p in allowed_partitions(policy, fleet)],
            "users": sorted(set(users)),
        },
        tenant,
    )
    return {"namespaces": [account], "kueue": [associations]}

"""Capacity exhaustion: which running deployments to offer the PDP as preemption victims (pure).

When a deployment cannot be placed for lack of GPUs, the platform degrades in this order: preempt
running deployments of lower tiers (spot first, then standard, never enterprise) if the PDP allows
it, else queue the request, else reject it. The PDP has the last word on every victim (`preempt`
intent, all-or-nothing): a tenant with allow_preemption false or a tier not below the preemptor's
is refused there, whatever this selection offers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Tiers whose running deployments may be offered as victims, in the order they are offered.
VICTIM_TIERS = ("spot", "standard")


def gpus(spec: Mapping[str, Any]) -> int:
    return int(spec["gpus_per_replica"]) * int(spec["replicas"])


def candidates(
    requester: str,
    gpu_class: str,
    tenants: Iterable[Mapping[str, Any]],
    deployments: Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Every running deployment of the GPU class held by another active spot or standard tenant:
    spot first, then standard, larger first, then by name (deterministic)."""
    tiers = {
        str(t["name"]): str(t["policy"].get("tier", ""))
        for t in tenants
        if t["state"] == "active" and t["name"] != requester
    }
    out = [
        {
            "tenant": d["tenant"],
            "workload": d["name"],
            "tier": tiers[d["tenant"]],
            "gpus": gpus(d["spec"]),
            "priority_class_name": f"gpupaas-{tiers[d['tenant']]}",
        }
        for d in deployments
        if d["state"] == "running"
        and d["tenant"] in tiers
        and tiers[d["tenant"]] in VICTIM_TIERS
        and d["spec"].get("gpu_class") == gpu_class
    ]
    out.sort(key=lambda c: (VICTIM_TIERS.index(c["tier"]), -c["gpus"], c["tenant"], c["workload"]))
    return out


def enough(pool: list[dict[str, Any]], needed: int) -> list[dict[str, Any]] | None:
    """The shortest prefix of `pool` that frees at least `needed` GPUs; None when all of it cannot."""
    chosen: list[dict[str, Any]] = []
    freed = 0
    for c in pool:
        if freed >= needed:
            break
        chosen.append(c)
        freed += int(c["gpus"])
    return chosen if freed >= needed else None


def allowed(chosen: list[dict[str, Any]], decision: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The members of `chosen` the PDP listed in constraints.preemptible_victims."""
    ok = {
        (str(v.get("tenant")), str(v.get("workload")))
        for v in decision.get("constraints", {}).get("preemptible_victims", []) or []
    }
    return [c for c in chosen if (c["tenant"], c["workload"]) in ok]


def preempt_intent(tenant: str, tier: str, victims: list[dict[str, Any]], actor: str) -> dict[str, Any]:
    return {
        "kind": "preempt",
        "tenant": tenant,
        "actor": actor,
        "preempt": {
            "priority_class_name": f"gpupaas-{tier}",
            "victims": [
                {
                    "tenant": v["tenant"],
                    "workload": v["workload"],
                    "priority_class_name": v["priority_class_name"],
                }
                for v in victims
            ],
        },
    }


# The queue retry: which queued deployments go first, and how many GPUs are free. -------------

# Retry order of queued deployments: the highest tier first, then first queued, first retried.
QUEUE_TIERS = ("enterprise", "standard", "spot")


def inventory(fleet: Mapping[str, Any]) -> dict[str, int]:
    """GPUs per class in the fleet inventory: nodes x GPUs per node over every pool."""
    out: dict[str, int] = {}
    for cluster in (fleet.get("clusters") or {}).values():
        for pool in (cluster.get("pools") or {}).values():
            cls = str(pool["gpu_class"])
            out[cls] = out.get(cls, 0) + int(pool.get("nodes", 0)) * int(pool.get("gpus_per_node", 0))
    return out


def running(gpu_class: str, deployments: Iterable[Mapping[str, Any]]) -> int:
    """GPUs of the class held by running deployments (every tenant)."""
    return sum(
        gpus(d["spec"])
        for d in deployments
        if d["state"] == "running" and d["spec"].get("gpu_class") == gpu_class
    )


def headroom(
    gpu_class: str,
    fleet: Mapping[str, Any],
    reported: Mapping[str, int],
    deployments: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    """Capacity of the class (the scheduler's last report, else the fleet inventory), the GPUs
    running deployments hold, and what is left. The lifecycle places only what it accounts for, so
    this is the scheduler's word corrected by every placement and release since."""
    total = int(reported[gpu_class]) if gpu_class in reported else inventory(fleet).get(gpu_class, 0)
    used = running(gpu_class, deployments)
    return {
        "gpu_class": gpu_class,
        "capacity": total,
        "source": "reported" if gpu_class in reported else "inventory",
        "running": used,
        "free": max(0, total - used),
    }


def queue_order(
    tenants: Iterable[Mapping[str, Any]], deployments: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The queued deployments of active tenants in retry order: tier (enterprise, standard, spot),
    then queued time (FIFO), then tenant and name (deterministic). Tenants not active wait."""
    tiers = {str(t["name"]): str(t["policy"].get("tier", "")) for t in tenants if t["state"] == "active"}
    out = [
        {
            "tenant": d["tenant"],
            "deployment": d["name"],
            "tier": tiers[d["tenant"]],
            "queued_at": str(d.get("queued_at") or d["updated_at"]),
            "gpus": gpus(d["spec"]),
            "spec": dict(d["spec"]),
        }
        for d in deployments
        if d["state"] == "queued" and d["tenant"] in tiers
    ]
    rank = {t: i for i, t in enumerate(QUEUE_TIERS)}
    out.sort(
        key=lambda q: (rank.get(q["tier"], len(QUEUE_TIERS)), q["queued_at"], q["tenant"], q["deployment"])
    )
    return out

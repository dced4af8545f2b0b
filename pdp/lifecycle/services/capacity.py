"""Capacity exhaustion: the GPUs a class has and the order the queue is retried in (pure).

When a deployment cannot be placed for lack of GPUs, the platform degrades as the degradation
policy plans it (policies/gpupaas/degradation, pdp/lifecycle/services/degradation.py: spot preempted first,
then standard scaled toward its minimum, never a tier not below the requester's), if the PDP
allows taking from each victim's tenant, else queues the request, else rejects it. The PDP has
the last word on every victim (`preempt` intent, all-or-nothing): a tenant with allow_preemption
false or a tier not below the preemptor's is refused there, whatever the plan offers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def gpus(spec: Mapping[str, Any]) -> int:
    return int(spec["gpus_per_replica"]) * int(spec["replicas"])


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

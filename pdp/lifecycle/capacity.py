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

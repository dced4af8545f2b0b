"""The degradation intent and its plan, shared by capacity exhaustion and incident response (pure).

When GPUs of a class are short (a deployment cannot be placed) or lost (a node taken out of
service), which running deployments give GPUs, in which order, and how far, is the policy's
decision (policies/gpupaas/degradation): spot preempted first, standard scaled toward its
minimum, enterprise kept at its entitlement, and only tiers below the one the room is for. This
module only builds the intent from the store's rows and reads the plan back; no tier is ranked in
Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pdp.lifecycle.states import DeploymentState


def deployments_of_class(
    gpu_class: str,
    tenants: Iterable[Mapping[str, Any]],
    deployments: Iterable[Mapping[str, Any]],
    *,
    clusters: Mapping[tuple[str, str], str] | None = None,
    affected: Iterable[tuple[str, str]] = (),
    excluded: str = "",
) -> list[dict[str, Any]]:
    """The running deployments of the class of active tenants (not `excluded`, the requester), as
    the degrade intent lists them: replicas, GPUs per replica, min_replicas, the cluster each was
    applied to (`clusters`: (tenant, name) -> cluster, when the worker manages clusters) and
    whether the fault took it down (`affected`)."""
    active = {str(t["name"]) for t in tenants if t["state"] == "active" and t["name"] != excluded}
    hit = set(affected)
    out = []
    for d in deployments:
        spec = d["spec"]
        if d["state"] != DeploymentState.RUNNING or d["tenant"] not in active:
            continue
        if spec.get("gpu_class") != gpu_class:
            continue
        row: dict[str, Any] = {
            "tenant": str(d["tenant"]),
            "deployment": str(d["name"]),
            "gpus_per_replica": int(spec["gpus_per_replica"]),
            "replicas": int(spec["replicas"]),
        }
        if "min_replicas" in spec:
            row["min_replicas"] = int(spec["min_replicas"])
        where = (clusters or {}).get((row["tenant"], row["deployment"]))
        if where:
            row["cluster"] = where
        if (row["tenant"], row["deployment"]) in hit:
            row["affected"] = True
        out.append(row)
    return sorted(out, key=lambda r: (r["tenant"], r["deployment"]))


def intent(
    cause: str,
    gpu_class: str,
    short_gpus: int,
    deployments: list[dict[str, Any]],
    actor: str,
    *,
    cluster: str = "",
    for_tier: str = "",
) -> dict[str, Any]:
    """The degrade intent: `short_gpus` of the class short (in `cluster` when given), room made for
    `for_tier` (only lower tiers give; "" every tier)."""
    payload: dict[str, Any] = {
        "cause": cause,
        "gpu_class": gpu_class,
        "short_gpus": max(0, int(short_gpus)),
        "deployments": deployments,
    }
    if cluster:
        payload["cluster"] = cluster
    if for_tier:
        payload["for_tier"] = for_tier
    return {"kind": "degrade", "actor": actor, "degrade": payload}


def plan(decision: Mapping[str, Any]) -> dict[str, Any] | None:
    """constraints.degradation of an allowed decision; None when the PDP denied it."""
    if decision.get("outcome") != "ALLOW":
        return None
    found = (decision.get("constraints") or {}).get("degradation")
    return dict(found) if isinstance(found, Mapping) else None


def victims(steps: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The plan's steps as the victims capacity exhaustion offers the preempt intent: each with
    the GPUs it releases, the replicas it goes to (0: preempted) and its tier's priority class."""
    return [
        {
            "tenant": str(s["tenant"]),
            "workload": str(s["deployment"]),
            "tier": str(s["tier"]),
            "gpus": int(s["release_gpus"]),
            "action": str(s["action"]),
            "to_replicas": int(s.get("to_replicas", 0)),
            "priority_class_name": f"gpupaas-{s['tier']}",
        }
        for s in steps
    ]


def short_reason(decision: Mapping[str, Any], fallback: str) -> str:
    """Why the plan cannot make room: the policy's DEGRADE_SHORT notice, or its denial."""
    if decision.get("outcome") == "DENY":
        return "degradation denied: " + ", ".join(str(r["code"]) for r in decision.get("reasons", []))
    for w in decision.get("warnings", []):
        if w.get("code") == "DEGRADE_SHORT":
            return f"{fallback} ({w['message']})"
    return fallback

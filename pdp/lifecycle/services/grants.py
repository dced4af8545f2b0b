"""What an approval grants, and whether a fresh decision stays within it (pure).

An approval answers one NEEDS_APPROVAL decision. Since the change is decided again when it is
applied (against the usage of that moment), the approval is kept as a grant: the approval reason
codes it accepted and, for a request that adds GPUs (deploy_model, scale), the class and the total
it let the tenant reach. A fresh decision is covered when it asks approval for nothing else and,
for GPUs, stays within that total; otherwise a new approval is asked, with the figures of the
fresh decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def added_gpus(intent: Mapping[str, Any]) -> tuple[str, int] | None:
    """(GPU class, GPUs the intent adds to the tenant's usage) for deploy_model and scale."""
    kind = intent.get("kind")
    payload = intent.get(str(kind), {})
    if kind == "deploy_model":
        return str(payload["gpu_class"]), int(payload["gpus_per_replica"]) * int(payload["replicas"])
    if kind == "scale":
        added = (int(payload["target_replicas"]) - int(payload["current_replicas"])) * int(
            payload["gpus_per_replica"]
        )
        return str(payload["gpu_class"]), added
    return None


def _codes(decision: Mapping[str, Any]) -> list[str]:
    return sorted({str(r["code"]) for r in decision.get("reasons", [])})


def grant(intent: Mapping[str, Any], decision: Mapping[str, Any]) -> dict[str, Any]:
    """What approving `decision` (NEEDS_APPROVAL, about `intent` with its usage) grants."""
    out: dict[str, Any] = {
        "decision_id": str(decision.get("decision_id", "")),
        "codes": _codes(decision),
    }
    added = added_gpus(intent)
    if added is not None:
        cls, gpus = added
        out.update(gpu_class=cls, total=int(intent.get("usage", {}).get(cls, 0)) + gpus)
    return out


def covers(granted: Mapping[str, Any] | None, intent: Mapping[str, Any], decision: Mapping[str, Any]) -> bool:
    """Whether a fresh NEEDS_APPROVAL `decision` about `intent` stays within `granted`."""
    if not granted or decision.get("outcome") != "NEEDS_APPROVAL":
        return False
    if not set(_codes(decision)) <= set(granted.get("codes", [])):
        return False
    added = added_gpus(intent)
    if added is None:
        return "total" not in granted
    cls, gpus = added
    if "total" not in granted or granted.get("gpu_class") != cls:
        return False
    return int(intent.get("usage", {}).get(cls, 0)) + gpus <= int(granted["total"])

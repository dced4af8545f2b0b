"""A `terraform show -json` / `tofu show -json` plan as one change_capacity intent (pure).

Which resources are GPU capacity: those whose values carry the gpupaas pool attributes, a flat map
of `gpupaas_*` keys in one of the attributes below (strings are fine: labels and tags hold only
strings). `terraform_data` carries them in `input`; a node pool resource in its labels or tags.

    gpupaas_pool              the pool's name (required: it marks the resource as GPU capacity)
    gpupaas_cluster           the fleet cluster (optional)
    gpupaas_region            the region (its jurisdiction comes from the fleet)
    gpupaas_gpu_class         a GPU class of the fleet
    gpupaas_nodes             nodes in the pool (0 allowed)
    gpupaas_gpus_per_node     GPUs per node
    gpupaas_dedicated_tenant  the tenant the pool is dedicated to (absent: shared)

Fail closed: a GPU resource whose attributes are unknown until apply, or malformed, makes the plan
unusable (PlanError naming the address); it is never skipped as if it were no capacity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ATTRIBUTES = ("input", "labels", "tags", "node_labels")
FIELDS = {
    "gpupaas_pool": "pool",
    "gpupaas_cluster": "cluster",
    "gpupaas_region": "region",
    "gpupaas_gpu_class": "gpu_class",
    "gpupaas_nodes": "nodes",
    "gpupaas_gpus_per_node": "gpus_per_node",
    "gpupaas_dedicated_tenant": "dedicated_tenant",
}
NUMBERS = {"nodes", "gpus_per_node"}
ACTIONS = {
    ("create",): "create",
    ("update",): "update",
    ("delete",): "delete",
    ("delete", "create"): "replace",
    ("create", "delete"): "replace",
}
SKIPPED = {("no-op",), ("read",), ("forget",)}
UNDECIDABLE = "its GPU capacity cannot be decided (give the gpupaas_* values literally)"


class PlanError(ValueError):
    """The plan cannot be decided; the message names the resource address and the problem."""


def _pool_map(values: Any) -> tuple[str, Mapping[str, Any]] | None:
    """(attribute, the gpupaas_* map) of a resource's values, or None for no GPU capacity."""
    if not isinstance(values, Mapping):
        return None
    for attribute in ATTRIBUTES:
        candidate = values.get(attribute)
        if isinstance(candidate, Mapping) and "gpupaas_pool" in candidate:
            return attribute, candidate
    return None


def _state(address: str, side: str, found: tuple[str, Mapping[str, Any]]) -> dict[str, Any]:
    attribute, raw = found
    state: dict[str, Any] = {}
    for key, field in FIELDS.items():
        value = raw.get(key)
        if value is None or value == "":
            continue
        if field in NUMBERS:
            try:
                value = int(str(value))
            except ValueError:
                raise PlanError(
                    f"{address}: {side}.{attribute}.{key} is {value!r}, not a whole number"
                ) from None
        else:
            value = str(value)
        state[field] = value
    missing = [k for k, f in FIELDS.items() if f in ("region", "gpu_class", "nodes", "gpus_per_node")
               and f not in state]  # fmt: skip
    if missing:
        raise PlanError(f"{address}: {side}.{attribute} lacks {', '.join(missing)}")
    return state


def _unknown(after_unknown: Any, attribute: str) -> bool:
    if not isinstance(after_unknown, Mapping):
        return False
    marker = after_unknown.get(attribute)
    if marker is True:
        return True
    return isinstance(marker, Mapping) and any(marker.get(k) is True for k in FIELDS)


def capacity_changes(plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The plan's GPU capacity changes, in plan order."""
    if not isinstance(plan, Mapping) or "format_version" not in plan:
        raise PlanError("(plan): not a `show -json` plan (no format_version)")
    changes: Sequence[Any] = plan.get("resource_changes") or []
    out = []
    for rc in changes:
        address = str(rc.get("address", "?"))
        change = rc.get("change") or {}
        actions = tuple(change.get("actions") or ())
        before, after = _pool_map(change.get("before")), _pool_map(change.get("after"))
        after_unknown = change.get("after_unknown")
        if before is None and after is None:
            # An attribute that would say whether this is GPU capacity, unknown until apply: the
            # plan might hide capacity there, so it cannot be decided.
            hidden = [a for a in ATTRIBUTES if _unknown(after_unknown, a)]
            if hidden and actions not in SKIPPED and actions != ("delete",):
                raise PlanError(f"{address}: after.{hidden[0]} is unknown until apply: {UNDECIDABLE}")
            continue
        if actions in SKIPPED:
            continue
        if actions not in ACTIONS:
            raise PlanError(f"{address}: actions {list(actions)} are not ones a plan check knows")
        if after is not None and _unknown(after_unknown, after[0]):
            raise PlanError(f"{address}: after.{after[0]} is unknown until apply: {UNDECIDABLE}")
        entry: dict[str, Any] = {"address": address, "action": ACTIONS[actions]}
        if before is not None and ACTIONS[actions] != "create":
            entry["before"] = _state(address, "before", before)
        if after is not None and ACTIONS[actions] != "delete":
            entry["after"] = _state(address, "after", after)
        out.append(entry)
    return out


def intent_from_plan(plan: Mapping[str, Any], *, actor: str = "") -> dict[str, Any]:
    intent: dict[str, Any] = {
        "kind": "change_capacity",
        "change_capacity": {"changes": capacity_changes(plan)},
    }
    if actor:
        intent["actor"] = actor
    return intent

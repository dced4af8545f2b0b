"""A faulty node taken out of service and given back (pure): the Node objects incident response
applies with server-side apply.

Taken out: `spec.unschedulable: true` (what `kubectl cordon` sets: nothing new is scheduled there)
and the taint `gpupaas.io/incident=<cause>:NoExecute`, which makes Kubernetes evict the pods that
run there (none of the platform's pods tolerates it), so their ReplicaSets recreate them on the
nodes their placement allows. Given back: the taint gone and `unschedulable` as it was before.

They are applied under their own field manager (`gpupaas-incident`), so the fields incident
response sets are told apart from the labels and taints the pool carving owns. `spec.taints` is an
atomic list (applying it replaces the whole list), so both objects carry the taints the node has
when they are applied, with only the incident taint added or removed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pdp.substrate.kubernetes.objects import Obj

FIELD_MANAGER = "gpupaas-incident"
INCIDENT_TAINT = "gpupaas.io/incident"
_NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]")


def taint_value(cause: str) -> str:
    """The taint's value: the cause as a label value (63 characters of [A-Za-z0-9_.-])."""
    value = _NOT_LABEL.sub("-", cause).strip("-_.")[:63].rstrip("-_.")
    return value or "fault"


def incident_taint(cause: str) -> dict[str, str]:
    return {"key": INCIDENT_TAINT, "value": taint_value(cause), "effect": "NoExecute"}


def state(node: Mapping[str, Any] | None) -> dict[str, Any]:
    """What of a Node (as the API server returns it) cordoning changes: its taints and whether it
    is unschedulable; a node the adapter cannot read (dry run) is taken as untainted."""
    spec = (node or {}).get("spec") or {}
    return {
        "unschedulable": bool(spec.get("unschedulable", False)),
        "taints": [
            {k: str(v) for k, v in t.items() if k in ("key", "value", "effect") and v is not None}
            for t in spec.get("taints") or []
        ],
    }


def others(taints: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [dict(t) for t in taints if t.get("key") != INCIDENT_TAINT]


def cordon(node: str, now: Mapping[str, Any], cause: str) -> Obj:
    """The Node out of service: unschedulable, the taints it has plus the incident taint."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node},
        "spec": {"unschedulable": True, "taints": [*others(now.get("taints", [])), incident_taint(cause)]},
    }


def release(node: str, now: Mapping[str, Any], was_unschedulable: bool) -> Obj:
    """The Node given back: the taints it has without the incident taint, and unschedulable only
    if it was before the incident (an operator's own cordon stays). Fields this manager no longer
    sets are dropped by server-side apply."""
    spec: dict[str, Any] = {}
    kept = others(now.get("taints", []))
    if kept:
        spec["taints"] = kept
    if was_unschedulable:
        spec["unschedulable"] = True
    obj: Obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}
    if spec:
        obj["spec"] = spec
    return obj


def is_cordoned(now: Mapping[str, Any]) -> bool:
    return bool(now.get("unschedulable")) and any(
        t.get("key") == INCIDENT_TAINT for t in now.get("taints", [])
    )

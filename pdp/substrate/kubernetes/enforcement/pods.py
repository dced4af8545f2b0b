"""Reading the watch events of pods, shared by the caches fed from the pod watch (cluster.py's
PodIndex, holdings.py's Holdings): which pod an event is about, and whether it now runs on a node."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Pods that finished hold no GPUs and no node: they do not occupy it.
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
_APPLIED = frozenset({"ADDED", "MODIFIED", "DELETED"})


def metadata_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, Mapping) else {}


@dataclass(frozen=True)
class PodEvent:
    """A pod event a cache applies: forget what it knew of `uid`, then, unless the pod is gone
    (deleted or finished), record it on `node` (None while it is not bound)."""

    uid: str
    namespace: str
    gone: bool
    node: str | None
    spec: Mapping[str, Any]


def read_pod_event(event_type: str, pod: Mapping[str, Any]) -> PodEvent | None:
    """The event as caches apply it; None for an event to ignore (a bookmark, a pod without uid or
    namespace)."""
    metadata = metadata_of(pod)
    uid, namespace = metadata.get("uid"), metadata.get("namespace")
    if not isinstance(uid, str) or not isinstance(namespace, str) or event_type not in _APPLIED:
        return None
    if event_type == "DELETED":
        return PodEvent(uid, namespace, gone=True, node=None, spec={})
    spec, status = pod.get("spec"), pod.get("status")
    if not isinstance(spec, Mapping):
        spec = {}
    node = spec.get("nodeName")
    phase = status.get("phase") if isinstance(status, Mapping) else None
    if phase in TERMINAL_PHASES:
        return PodEvent(uid, namespace, gone=True, node=None, spec=spec)
    return PodEvent(
        uid, namespace, gone=False, node=node if isinstance(node, str) and node else None, spec=spec
    )

"""The policy's verdict on a pod's candidate nodes: the `place_workload` intent the extender asks,
and the eligible and rejected nodes read from its decision, applied from each node shape's first
node to the others of its shape (pure); and the last verdict per pod, which prioritize reuses."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pdp.decision import Decision, Outcome

ACTOR = "kube-scheduler"


@dataclass(frozen=True)
class Verdict:
    """The policy's answer for one pod over one node set."""

    eligible: frozenset[str]
    unresolvable: Mapping[str, str] = field(default_factory=dict)
    resolvable: Mapping[str, str] = field(default_factory=dict)


def _reason_text(reasons: Sequence[Mapping[str, Any]] | Sequence[Any]) -> str:
    parts = []
    for r in reasons:
        code = r.get("code", "") if isinstance(r, Mapping) else getattr(r, "code", "")
        message = r.get("message", "") if isinstance(r, Mapping) else getattr(r, "message", "")
        parts.append(f"{code}: {message}")
    return "; ".join(parts) or "rejected by gpupaas policy"


def place_intent(workload: Mapping[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "place_workload", "actor": ACTOR, "place_workload": {**workload, "nodes": nodes}}


def verdict_from_decision(decision: Decision, names: Sequence[str]) -> Verdict:
    """Eligible and rejected nodes (pure). A decision that is not ALLOW fails every node, with its
    own reasons where the policy named the node and the workload's reasons elsewhere."""
    rejected: dict[str, str] = {}
    for entry in decision.constraints.get("rejected_nodes") or ():
        if isinstance(entry, Mapping) and isinstance(entry.get("node"), str):
            rejected[entry["node"]] = _reason_text(entry.get("reasons") or ())
    if decision.outcome is not Outcome.ALLOW:
        workload_reasons = _reason_text(decision.reasons)
        return Verdict(frozenset(), {n: rejected.get(n, workload_reasons) for n in names})
    return Verdict(
        frozenset(n for n in names if n not in rejected), {n: rejected[n] for n in names if n in rejected}
    )


def group_nodes(nodes: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Nodes with the same labels and the same occupants, keyed by the first of them (pure).

    The policy's verdict on a node depends on its labels and occupants only, and a fleet has a
    few hundred node shapes at most (one per pool and occupancy), not thousands; asking once per
    shape is what keeps a 5,000-node cycle fast.
    """
    groups: dict[tuple[Any, ...], list[str]] = {}
    for node in nodes:
        namespaces, tenants = node.get("namespaces"), node.get("tenants")
        shape = (
            frozenset(node.get("labels", {}).items()),
            tuple(sorted(namespaces)) if namespaces else (),
            tuple(sorted(tenants)) if tenants else (),
        )
        groups.setdefault(shape, []).append(node["name"])
    return {members[0]: members for members in groups.values()}


def expand_verdict(verdict: Verdict, groups: Mapping[str, Sequence[str]]) -> Verdict:
    """The verdict on each group's first node applied to every member (pure), each refusal worded
    for kube-scheduler: without the node's name (`node "x"` -> `the node`), which the map's key
    already gives. kube-scheduler writes the pod's PodScheduled message (and its event) by
    counting equal reasons; named, 405 refused nodes were 405 distinct reasons, a message of
    tens of KB written again on every failed attempt as the counts moved."""
    eligible = frozenset(m for first in verdict.eligible for m in groups.get(first, (first,)))
    unresolvable: dict[str, str] = {}
    for first, text in verdict.unresolvable.items():
        members = groups.get(first, (first,))
        text = text.replace(f'node "{first}"', "the node")
        pieces = text.split(f'"{first}"')  # a mention of the node other than the opening one
        if len(pieces) == 1:
            unresolvable.update(dict.fromkeys(members, text))
        else:
            unresolvable.update({m: f'"{m}"'.join(pieces) for m in members})
    return Verdict(eligible, unresolvable, verdict.resolvable)


class VerdictCache:
    """The last verdict per pod uid, with the node set it judged: prioritize follows filter in
    the same cycle. Keyed by the uid alone, so storing a verdict never compares two node sets
    (5,000 names each); only a look-up compares the set it is asked for with the one judged."""

    def __init__(self, size: int = 256, ttl: float = 30.0) -> None:
        self._size = size
        self._ttl = ttl
        self._entries: OrderedDict[str, tuple[float, frozenset[str], Verdict]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, uid: str, names: frozenset[str]) -> Verdict | None:
        with self._lock:
            entry = self._entries.get(uid)
            if entry is None or entry[1] != names:
                return None
            if time.monotonic() - entry[0] > self._ttl:
                del self._entries[uid]
                return None
            self._entries.move_to_end(uid)
            return entry[2]

    def put(self, uid: str, names: frozenset[str], verdict: Verdict) -> None:
        with self._lock:
            self._entries[uid] = (time.monotonic(), names, verdict)
            self._entries.move_to_end(uid)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

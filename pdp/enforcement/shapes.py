"""Node shapes for the scheduler extender: the facts the policy judges a node by (its labels and
the namespaces of the pods on it), grouped so the policy is asked once per shape, not per node.

kube-scheduler sends the same few thousand nodes every cycle, and their labels rarely change. A
`ShapeCache` remembers, per node name, the labels last seen and their hashable key, so a repeated
node costs one dict look-up and one comparison of its labels with the ones remembered (an exact
comparison, not a digest: a node whose labels changed is always keyed again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

LabelsKey = frozenset[tuple[str, str]]
ShapeKey = tuple[LabelsKey, tuple[str, ...]]


def string_labels(labels: Any) -> Mapping[str, str]:
    """The string-valued labels of a node's `metadata.labels` as decoded from JSON."""
    if not isinstance(labels, dict):
        return {}
    # JSON object keys are strings already; a copy is only needed to drop non-string values,
    # which a well-formed Node never has.
    if all(type(v) is str for v in labels.values()):
        return labels
    return {k: v for k, v in labels.items() if isinstance(v, str)}


class ShapeCache:
    """Node name -> (labels last seen, their interned key). Bounded: cleared when it outgrows
    `size` names (a fleet that large re-keys once, then hits again)."""

    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        self._entries: dict[str, tuple[Mapping[str, str], LabelsKey]] = {}
        # Equal keys interned to one object, so grouping compares them by identity.
        self._interned: dict[LabelsKey, LabelsKey] = {}

    def labels_key(self, name: str, labels: Mapping[str, str]) -> LabelsKey:
        # Reads and writes are single dict operations (atomic under the GIL); concurrent
        # requests at worst key the same node twice, each from the labels it was given.
        entry = self._entries.get(name)
        if entry is not None and entry[0] == labels:
            return entry[1]
        key = frozenset(string_labels(labels).items())
        key = self._interned.setdefault(key, key)
        if len(self._entries) >= self._size:
            self._entries.clear()
            self._interned.clear()
        # A copy: a caller that changes its labels dict in place must not change ours with it.
        self._entries[name] = (dict(labels), key)
        return key

    def __len__(self) -> int:
        return len(self._entries)


def group_by_shape(
    names: Sequence[str],
    labels: Mapping[str, Mapping[str, str]],
    occupants: Mapping[str, Sequence[str]] | None,
    cache: ShapeCache,
) -> dict[str, list[str]]:
    """Candidate nodes with the same labels and occupants, keyed by the first of them.

    `occupants` maps a node to the namespaces of the pods on it (absent: none); None when there
    is no cluster view, so every node is unoccupied as far as the policy knows.
    """
    # The cache's hit path (labels as remembered) inline: this loop runs once per candidate
    # node per cycle, and a method call per node was a fifth of it.
    entries = cache._entries
    key_of = cache.labels_key
    no_labels: Mapping[str, str] = {}
    groups: dict[Any, list[str]] = {}
    for name in names:
        node_labels = labels.get(name) or no_labels
        entry = entries.get(name)
        key: Any = entry[1] if entry is not None and entry[0] == node_labels else key_of(name, node_labels)
        if occupants:
            key = (key, tuple(sorted(occupants.get(name, ()))))
        members = groups.get(key)
        if members is None:
            groups[key] = [name]
        else:
            members.append(name)
    return {members[0]: members for members in groups.values()}

"""Node shapes for the scheduler extender: the facts the policy judges a node by (its labels and
the namespaces of the pods on it), grouped so the policy is asked once per shape, not per node.

kube-scheduler sends the same few thousand nodes every cycle, and their labels rarely change. A
`ShapeCache` remembers, per node name, the labels last seen and their hashable key, so a repeated
node costs one dict look-up and one comparison of its labels with the ones remembered (an exact
comparison, not a digest: a node whose labels changed is always keyed again). Labels that came
as JSON text (the scheduler's Nodes, read by `extender_args`) are keyed by that text instead.

A real node's labels are its own: `kubernetes.io/hostname`, zone, instance type and id, feature
discovery's driver versions and timestamps. Keyed on all of them, 5,000 nodes are 5,000 shapes.
The policy reads only the keys its `lib.node_labels` keeps (it filters every candidate node's labels
on `lib.node_label_keys`) and reports them in each `place_workload` decision
(`constraints.node_label_keys`); a `Projection` cuts the keys down to those, so nodes that differ
only in labels no rule can read are one shape. The extender projects on the keys a previous
decision reported and takes a decision only when it reports keys within those it kept
(`SchedulerExtender`); otherwise (a new bundle that reads more, or no report) it asks again with
whole labels.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import orjson

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
    """Node name -> (labels last seen, their interned key), and the labels' JSON text as sent ->
    its interned key. Bounded: each map is cleared when it outgrows `size` entries (a fleet that
    large re-keys once, then hits again)."""

    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        self._entries: dict[str, tuple[Mapping[str, str], LabelsKey]] = {}
        self._texts: dict[bytes, LabelsKey] = {}
        self.text_size = 0.0
        """The mean size of the labels texts `text_keys` last keyed (bytes)."""
        # Equal keys interned to one object, so grouping compares them by identity.
        self._interned: dict[LabelsKey, LabelsKey] = {}

    def _intern(self, labels: Any) -> LabelsKey:
        key = frozenset(string_labels(labels).items())
        if len(self._interned) >= self._size:
            self._interned.clear()
        return self._interned.setdefault(key, key)

    def labels_key(self, name: str, labels: Mapping[str, str]) -> LabelsKey:
        # Reads and writes are single dict operations (atomic under the GIL); concurrent
        # requests at worst key the same node twice, each from the labels it was given.
        entry = self._entries.get(name)
        if entry is not None and entry[0] == labels:
            return entry[1]
        key = self._intern(labels)
        if len(self._entries) >= self._size:
            self._entries.clear()
        # A copy: a caller that changes its labels dict in place must not change ours with it.
        self._entries[name] = (dict(labels), key)
        return key

    def keys_of(
        self, names: Sequence[str], labels: Mapping[str, Mapping[str, str]], *, replaced: bool = False
    ) -> list[LabelsKey]:
        """The key of each node's labels (absent: none).

        `replaced`: the caller's labels dicts are replaced when a node's labels change, never
        edited in place (`ClusterState`: see NodeIndex), so the very dict remembered is the
        labels unchanged; it is kept instead of a copy and recognised by identity, without
        comparing its labels."""
        # The hit path (labels as remembered) inline: this loop runs once per candidate node
        # per cycle, and a method call per node was a fifth of it.
        entries = self._entries
        key_of = self.labels_key
        no_labels: Mapping[str, str] = {}
        keys = []
        for name in names:
            node_labels = labels.get(name) or no_labels
            entry = entries.get(name)
            if entry is not None and (entry[0] is node_labels if replaced else entry[0] == node_labels):
                keys.append(entry[1])
            elif replaced:
                key = key_of(name, node_labels)
                entries[name] = (node_labels, key)  # the dict itself (it is never edited)
                keys.append(key)
            else:
                keys.append(key_of(name, node_labels))
        return keys

    def text_keys(self, texts: Sequence[bytes]) -> list[LabelsKey]:
        """The key of each node's `metadata.labels` given as its JSON text (b"": absent).

        Keyed by the text itself, not the node: kube-scheduler writes equal labels as equal text
        (Go sorts map keys), so a fleet's few shapes are a few texts. Raises ValueError for a
        text orjson does not read (the body is then not JSON to the rest of the extender)."""
        known = self._texts
        self.text_size = sum(map(len, texts)) / len(texts) if texts else 0.0
        try:
            return [known[text] for text in texts]
        except KeyError:
            pass
        missing = set(texts).difference(known)
        if len(known) + len(missing) > self._size:
            known.clear()
            missing = set(texts)
        for text in missing:
            labels = orjson.loads(text) if text else None
            known[text] = self._intern(labels if type(labels) is dict else {})
        return [known[text] for text in texts]

    def __len__(self) -> int:
        return len(self._entries)


class Projection:
    """Labels keys cut down to the label keys the policy reads (`keys`), one interned key per
    distinct result, remembered per whole-labels key (a fleet's keys repeat every cycle). Bounded
    like `ShapeCache`."""

    def __init__(self, keys: frozenset[str], size: int = 100_000) -> None:
        self.keys = keys
        self._size = size
        self._cut: dict[LabelsKey, LabelsKey] = {}
        self._interned: dict[LabelsKey, LabelsKey] = {}

    def project(self, keys: Sequence[LabelsKey]) -> list[LabelsKey]:
        cut = self._cut
        try:
            return [cut[key] for key in keys]  # every key seen before: the common case
        except KeyError:
            pass
        if len(cut) + len(keys) > self._size:
            cut.clear()
            self._interned.clear()
        read = self.keys
        projected = []
        for key in keys:
            known = cut.get(key)
            if known is None:
                kept = frozenset(item for item in key if item[0] in read)
                known = cut[key] = self._interned.setdefault(kept, kept)
            projected.append(known)
        return projected


def label_keys_read(constraints: Any) -> frozenset[str] | None:
    """The node label keys a `place_workload` decision's constraints report its policy reads;
    None when they report none (a bundle without the report, an engine failure)."""
    if not isinstance(constraints, Mapping):
        return None
    keys = constraints.get("node_label_keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        return None
    return frozenset(keys)


def _strings(doc: Any) -> Iterator[str]:
    if isinstance(doc, str):
        yield doc
    elif isinstance(doc, Mapping):
        for key, value in doc.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(doc, list | tuple):
        for item in doc:
            yield from _strings(item)


def named_nodes(intent: Mapping[str, Any], candidates: Mapping[str, Any] | frozenset[str]) -> frozenset[str]:
    """The candidates whose name the intent (its node list aside) mentions anywhere.

    A node's name is the one thing about it besides its labels and occupants that the policy
    may judge by: a pod that names its node (spec.nodeName, a hostname selector or affinity) is
    judged on what is known of that very node. Such a node is a shape of its own, so the policy
    sees it under its own name; any string of the intent counts, not only the fields that name
    nodes today."""
    return frozenset(s for s in _strings(intent) if s in candidates)


def shape_labels(key: LabelsKey) -> dict[str, str]:
    """The labels a key stands for, in a stable order."""
    return dict(sorted(key))


class Grouping(NamedTuple):
    members: dict[str, list[str]]
    """Each shape's nodes, keyed by the first of them."""
    keys: dict[str, LabelsKey]
    """Each shape's labels, keyed by its first node."""


def group_by_shape(
    names: Sequence[str],
    keys: Sequence[LabelsKey],
    occupants: Mapping[str, Sequence[str]] | None,
    alone: frozenset[str] = frozenset(),
) -> Grouping:
    """Candidate nodes with the same labels (`keys`, one per name) and occupants.

    `occupants` maps a node to the namespaces of the pods on it (absent: none); None when there
    is no cluster view, so every node is unoccupied as far as the policy knows. The nodes in
    `alone` (`named_nodes`) are each a shape of their own.
    """
    shapes: Sequence[Any] = keys
    tupled = bool(occupants or alone)
    if tupled:
        # Sorted once per occupied node (the few), not once per candidate.
        occupied = {name: tuple(sorted(namespaces)) for name, namespaces in (occupants or {}).items()}
        shapes = [
            (key, occupied.get(name, ()), name if name in alone else None)
            for name, key in zip(names, keys, strict=True)
        ]
    groups: dict[Any, list[str]] = {}
    for name, shape in zip(names, shapes, strict=True):
        members = groups.get(shape)
        if members is None:
            groups[shape] = [name]
        else:
            members.append(name)
    return Grouping(
        {members[0]: members for members in groups.values()},
        {members[0]: shape[0] if tupled else shape for shape, members in groups.items()},
    )

"""kube-scheduler's filter and prioritize calls on the wire: the pod and candidate nodes of an
ExtenderArgs, and the ExtenderFilterResult built from a verdict (the preempt verb's: `preemption`).

The scheduler's Go types (ExtenderArgs, ExtenderFilterResult, HostPriority) have no JSON tags, so
the keys are Go field names: Pod, Nodes, NodeNames, FailedNodes, FailedAndUnresolvableNodes,
Error, Host, Score.

A body is read in one of two ways that give the same candidates:

- `read_args` (the HTTP path) decodes only what the policy needs of a Nodes list, each node's
  name and its labels as JSON text, with msgspec into structs the cyclic collector never walks;
  the nodes that pass are sent back as the very text they came in (`msgspec.Raw`), never decoded
  or encoded. A 1.3 MB ExtenderArgs of 5,000 nodes was decoded into ~30,000 dicts and lists
  (3 ms, and the collections they tipped), grouped by a second pass over them, and half of it
  encoded again; kube-scheduler's own Nodes carry their whole status too. Once the policy has
  reported the label keys it reads, labels are decoded on those keys alone (`_ReadKeys`).
- `parse_args` reads decoded JSON (orjson). `read_args` hands anything unusual (a type or a
  node name it does not expect, a repeated name, labels orjson would not read) to it, so every
  error keeps its one wording and precedence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import orjson

from pdp.substrate.kubernetes.enforcement.extender.verdict import Verdict
from pdp.substrate.kubernetes.enforcement.shapes import LabelsKey, ShapeCache


class ClusterView(Protocol):
    """What the extender needs of the cluster: node labels (nodeCacheCapable) and occupancy."""

    def node_labels(self, name: str) -> Mapping[str, str] | None: ...

    def namespaces_on(self, node: str, exclude_pod_uid: str | None = None) -> list[str]: ...


def labels_of(cluster: ClusterView, names: Sequence[str]) -> dict[str, Mapping[str, str]]:
    """Labels of many nodes: in one read where the view offers it (ClusterState.labels_of)."""
    bulk = getattr(cluster, "labels_of", None)
    if bulk is not None:
        return bulk(names)  # type: ignore[no-any-return]
    return {name: cluster.node_labels(name) or {} for name in names}


class BadArgs(ValueError):
    """The ExtenderArgs are not well formed."""


@dataclass(frozen=True)
class Candidates:
    pod: Mapping[str, Any]
    uid: str
    namespace: str
    names: list[str]
    objects: Sequence[Any] | None  # the Nodes items (dicts or msgspec.Raw), when the scheduler sent objects
    labels: Mapping[str, Mapping[str, str]]
    keys: list[LabelsKey] | None = None  # the key of each node's labels, when read from their text
    unique: frozenset[str] | None = None  # the names as a set, when reading them built it
    cut_to: frozenset[str] | None = None  # `keys` hold only these label keys (None: whole labels)
    whole_keys: Callable[[], list[LabelsKey]] | None = None  # whole-labels keys, read again


def _pod(pod: Any) -> tuple[Mapping[str, Any], str, str]:
    """The pod, its uid and its namespace."""
    if not isinstance(pod, Mapping):
        raise BadArgs("Pod is missing")
    metadata = pod.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    namespace = metadata.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        raise BadArgs("Pod.metadata.namespace is missing")
    given = metadata.get("uid")
    uid = given if isinstance(given, str) and given else f"{namespace}/{metadata.get('name')}"
    return pod, uid, namespace


def named_candidates(
    pod: Any, node_names: Any, cluster: ClusterView | None, *, strings: bool = False
) -> Candidates:
    """Candidates given by name (nodeCacheCapable): their labels from the cluster view.
    `strings`: `node_names` is known to be a list of strings (decoded as such)."""
    pod, uid, namespace = _pod(pod)
    if not strings and (not isinstance(node_names, list) or not all(isinstance(n, str) for n in node_names)):
        raise BadArgs("NodeNames is not a list of node names")
    names = list(node_names)
    unique = frozenset(names)
    if "" in unique:
        raise BadArgs("NodeNames is not a list of node names")
    if names and cluster is None:
        raise BadArgs("NodeNames needs the extender's cluster view (run it with a kubeconfig)")
    if len(unique) != len(names):
        raise BadArgs("the candidate nodes repeat a name")
    labels = labels_of(cluster, names) if cluster is not None else {}
    return Candidates(pod, uid, namespace, names, None, labels, unique=unique)


def parse_args(args: Any, cluster: ClusterView | None) -> Candidates:
    """The pod and candidate nodes of decoded ExtenderArgs (pure, given the cluster view)."""
    if not isinstance(args, Mapping):
        raise BadArgs("the extender arguments are not a JSON object")
    if args.get("NodeNames") is not None:
        return named_candidates(args.get("Pod"), args["NodeNames"], cluster)
    pod, uid, namespace = _pod(args.get("Pod"))
    names: list[str] = []
    labels: Mapping[str, Mapping[str, str]] = {}
    objects: list[Mapping[str, Any]] | None = None
    found: dict[str, Mapping[str, str]] = {}
    if args.get("Nodes") is not None:
        nodes = args["Nodes"]
        items = nodes.get("items") if isinstance(nodes, Mapping) else None
        items = [] if isinstance(nodes, Mapping) and items is None else items
        if not isinstance(items, list):
            raise BadArgs("Nodes.items is not a list")
        objects = items
        for i, node in enumerate(items):
            # Decoded JSON: objects are dicts (checked exactly, the cheapest check per node).
            meta = node.get("metadata") if type(node) is dict else None
            node_name = meta.get("name") if type(meta) is dict else None
            if type(node_name) is not str or not node_name:
                raise BadArgs(f"Nodes.items[{i}].metadata.name is missing")
            names.append(node_name)
            # As sent: non-string values are dropped where labels are read (shapes.string_labels),
            # once per distinct node, not on every cycle.
            given = meta.get("labels")  # type: ignore[union-attr]
            found[node_name] = given if type(given) is dict else {}
        labels = found
        # One labels entry per distinct name already: no second set of names to build.
        if len(found) != len(names):
            raise BadArgs("the candidate nodes repeat a name")
    return Candidates(pod, uid, namespace, names, objects, labels)


# -- the HTTP path: what the policy needs, decoded; the rest kept as the text it came in ---------


class _Metadata(msgspec.Struct, gc=False):
    name: str = ""
    labels: msgspec.Raw = msgspec.Raw()


class _Node(msgspec.Struct, gc=False):
    metadata: _Metadata = msgspec.field(default_factory=_Metadata)


class _NodeList(msgspec.Struct, gc=False):
    items: list[_Node] | None = None


class _Args(msgspec.Struct, gc=False):
    Pod: msgspec.Raw = msgspec.Raw()
    Nodes: _NodeList | None = None
    NodeNames: list[str] | None = None


class _RawNodeList(msgspec.Struct, gc=False):
    items: list[msgspec.Raw] | None = None


class _RawNodes(msgspec.Struct, gc=False):
    Nodes: _RawNodeList | None = None


_ARGS = msgspec.json.Decoder(_Args)
_RAW_NODES = msgspec.json.Decoder(_RawNodes)
_ENCODER = msgspec.json.Encoder()


def _node_texts(body: bytes) -> list[msgspec.Raw]:
    """The Nodes items of a body `read_args` read, each as the text it came in."""
    nodes = _RAW_NODES.decode(body).Nodes
    return (nodes.items if nodes is not None else None) or []


class _ReadKeys:
    """A decoder of ExtenderArgs that reads of each node's labels only the label keys the policy
    reads (`keys`): a struct of those keys, the rest skipped by msgspec, and the projected key of
    each distinct struct remembered. Keying on the labels' text instead copied and hashed ~1.5 KB
    per real node (its hostname, instance id... make every text its own) for a key the projection
    then cut down anyway."""

    def __init__(self, keys: frozenset[str], size: int = 100_000) -> None:
        self.keys = keys
        self._size = size
        self._fields = sorted(keys)
        names = {f"k{i}": key for i, key in enumerate(self._fields)}
        labels = msgspec.defstruct(
            "_ReadLabels", [(name, str | None, None) for name in names], rename=names, frozen=True, gc=False
        )
        metadata = msgspec.defstruct(
            "_ReadMetadata", [("name", str, ""), ("labels", labels | None, None)], gc=False
        )
        node = msgspec.defstruct(
            "_ReadNode", [("metadata", metadata, msgspec.field(default_factory=metadata))], gc=False
        )
        nodes = msgspec.defstruct("_ReadNodeList", [("items", list[node] | None, None)], gc=False)  # type: ignore[valid-type]
        args = msgspec.defstruct(
            "_ReadArgs",
            [
                ("Pod", msgspec.Raw, msgspec.Raw()),
                ("Nodes", nodes | None, None),
                ("NodeNames", list[str] | None, None),
            ],
            gc=False,
        )
        self.decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(args)
        self._known: dict[Any, LabelsKey] = {}
        self._interned: dict[LabelsKey, LabelsKey] = {}

    def keys_of(self, labels: list[Any]) -> list[LabelsKey]:
        """The projected key of each node's labels struct (None: no labels)."""
        known = self._known
        try:
            return [known[given] for given in labels]  # every struct seen before: the common case
        except KeyError:
            pass
        missing = set(labels).difference(known)
        if len(known) + len(missing) > self._size:
            known.clear()
            self._interned.clear()
            missing = set(labels)
        for given in missing:
            values = msgspec.structs.astuple(given) if given is not None else ()
            kept = frozenset((k, v) for k, v in zip(self._fields, values, strict=False) if v is not None)
            known[given] = self._interned.setdefault(kept, kept)
        return [known[given] for given in labels]


_READ_KEYS: dict[frozenset[str], _ReadKeys] = {}


def _read_keys(keys: frozenset[str]) -> _ReadKeys:
    reader = _READ_KEYS.get(keys)
    if reader is None:
        if len(_READ_KEYS) >= 16:  # a policy reads one set of keys; bundles change it rarely
            _READ_KEYS.clear()
        reader = _READ_KEYS[keys] = _ReadKeys(keys)
    return reader


def read_args(
    body: bytes, cluster: ClusterView | None, shapes: ShapeCache, read: frozenset[str] | None = None
) -> Candidates | None:
    """The candidates of an ExtenderArgs body; None when the body is not the common case (nor JSON,
    perhaps): `parse_args` then reads it and names what is wrong.

    `read`: the node label keys the policy reads; each node's labels are then keyed on those
    alone (`Candidates.cut_to`), and on whole labels only if asked (`Candidates.whole_keys`)."""
    if read is not None:
        reader = _read_keys(read)
        return _read(
            body,
            cluster,
            reader.decoder,
            lambda meta: reader.keys_of([m.labels for m in meta]),
            reader.keys,
            shapes,
        )
    # Labels orjson cannot read make the body not JSON (ValueError): before the pod is judged.
    return _read(body, cluster, _ARGS, lambda meta: shapes.text_keys([bytes(m.labels) for m in meta]))


def _read(
    body: bytes,
    cluster: ClusterView | None,
    decoder: msgspec.json.Decoder[Any],
    keys_of: Callable[[list[Any]], list[LabelsKey]],
    cut: frozenset[str] | None = None,
    shapes: ShapeCache | None = None,
) -> Candidates | None:
    """`keys_of`: each node's labels key from its metadata; `cut`: the label keys it keeps (then
    `shapes` reads whole labels again if the policy asks for one it dropped)."""
    try:
        # A read key whose value is not a string, labels that are not an object: not the common
        # case (parse_args keys them as the whole-labels path does). msgspec recurses per level of
        # nesting, so a deep body is a RecursionError here: orjson (parse_args) then names its depth.
        args = decoder.decode(body)
        pod = orjson.loads(bytes(args.Pod)) if args.Pod else None
    except (msgspec.MsgspecError, ValueError, RecursionError):
        return None
    if args.NodeNames is not None:
        return named_candidates(pod, args.NodeNames, cluster, strings=True)
    names: list[str] = []
    keys: list[LabelsKey] = []
    unique: frozenset[str] = frozenset()
    objects = whole = None
    if args.Nodes is not None:
        metadata = [node.metadata for node in args.Nodes.items or ()]
        names = [m.name for m in metadata]
        unique = frozenset(names)
        if len(unique) != len(names) or "" in unique:
            return None
        try:
            keys = keys_of(metadata)
        except ValueError:
            return None
        objects = _LazyTexts(body)
        whole = _WholeKeys(body, shapes) if cut is not None and shapes is not None else None
    pod, uid, namespace = _pod(pod)
    if cut is None:
        return Candidates(pod, uid, namespace, names, objects, {}, keys, unique)
    return Candidates(pod, uid, namespace, names, objects, {}, keys, unique, cut, whole)


class _WholeKeys:
    """Each node's whole-labels key, read again from the body: only when the policy reports
    reading a label key the cut dropped (a new bundle)."""

    def __init__(self, body: bytes, shapes: ShapeCache) -> None:
        self._body = body
        self._shapes = shapes

    def __call__(self) -> list[LabelsKey]:
        args = _ARGS.decode(self._body)
        metadata = [node.metadata for node in (args.Nodes.items if args.Nodes else None) or ()]
        try:
            return self._shapes.text_keys([bytes(m.labels) for m in metadata])
        except ValueError as exc:
            raise BadArgs(f"Nodes.items[].metadata.labels is not JSON: {exc}") from exc


class _LazyTexts(Sequence[msgspec.Raw]):
    """The Nodes items as sent, split out of the body only when some node is sent back."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._items: list[msgspec.Raw] | None = None

    def _all(self) -> list[msgspec.Raw]:
        if self._items is None:
            self._items = _node_texts(self._body)
        return self._items

    def __len__(self) -> int:
        return len(self._all())

    def __getitem__(self, index: Any) -> Any:
        return self._all()[index]

    def __iter__(self) -> Any:
        return iter(self._all())


# -- answers ---------------------------------------------------------------------------------------


def filter_result(candidates: Candidates, verdict: Verdict, error: str = "") -> dict[str, Any]:
    """ExtenderFilterResult in the shape of the arguments (pure)."""
    eligible = verdict.eligible
    result: dict[str, Any] = {
        "FailedNodes": dict(verdict.resolvable),
        "FailedAndUnresolvableNodes": dict(verdict.unresolvable),
        "Error": error,
    }
    if candidates.objects is not None:
        pairs = zip(candidates.names, candidates.objects, strict=True) if eligible else ()
        result["Nodes"] = {"items": [o for n, o in pairs if n in eligible]}
        result["NodeNames"] = None
    else:
        result["Nodes"] = None
        result["NodeNames"] = [n for n in candidates.names if n in eligible]
    return result


def error_result(message: str) -> dict[str, Any]:
    return {
        "Nodes": None,
        "NodeNames": None,
        "FailedNodes": {},
        "FailedAndUnresolvableNodes": {},
        "Error": message,
    }


def encode(answer: Any) -> bytes:
    """JSON of an answer whose nodes may be `msgspec.Raw` texts (written as they are)."""
    return _ENCODER.encode(answer)

"""The kube-scheduler extender: node-level placement policy (residency, dedicated pools, node
occupancy, sharing) decided per scheduling cycle with one `place_workload` decision.

The scheduler's Go types (ExtenderArgs, ExtenderFilterResult, HostPriority) have no JSON tags, so
the keys are Go field names: Pod, Nodes, NodeNames, FailedNodes, FailedAndUnresolvableNodes,
Error, Host, Score.

Policy rejections go to FailedAndUnresolvableNodes: preempting pods cannot make a node of the
wrong region or another tenant's pool acceptable, so the scheduler must not try.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from pdp import metrics
from pdp.decision import Decision, Outcome
from pdp.enforcement.jsonhttp import HttpError, HttpService, JsonHttpServer
from pdp.enforcement.servingcert import DEFAULT_POLL_INTERVAL, ServingCertificate
from pdp.enforcement.shapes import ShapeCache, group_by_shape, string_labels
from pdp.enforcement.workloads import InvalidObject, UnsupportedObject, needs_policy, workload_from_object
from pdp.intents import InvalidIntent, validate_intent
from pdp.point import DecideOptions, DecisionPoint

MAX_NODES = 20000  # the intent schema's place_workload.nodes maxItems
MAX_SCORE = 10  # kube-scheduler's MaxExtenderPriority
ACTOR = "kube-scheduler"
EXTENDER_TIMEOUT = 5.0  # kube-scheduler's default extender httpTimeout


class ClusterView(Protocol):
    """What the extender needs of the cluster: node labels (nodeCacheCapable) and occupancy."""

    def node_labels(self, name: str) -> Mapping[str, str] | None: ...

    def namespaces_on(self, node: str, exclude_pod_uid: str | None = None) -> list[str]: ...


def _labels_of(cluster: ClusterView, names: Sequence[str]) -> dict[str, Mapping[str, str]]:
    """Labels of many nodes: in one read where the view offers it (ClusterState.labels_of)."""
    bulk = getattr(cluster, "labels_of", None)
    if bulk is not None:
        return bulk(names)  # type: ignore[no-any-return]
    return {name: cluster.node_labels(name) or {} for name in names}


def _occupants(cluster: ClusterView, names: Sequence[str], uid: str) -> dict[str, list[str]]:
    """Namespaces on each occupied candidate (in one read where the view offers it)."""
    bulk = getattr(cluster, "occupants", None)
    if bulk is not None:
        return bulk(names, uid)  # type: ignore[no-any-return]
    found = {name: cluster.namespaces_on(name, exclude_pod_uid=uid) for name in names}
    return {name: namespaces for name, namespaces in found.items() if namespaces}


class BadArgs(ValueError):
    """The ExtenderArgs are not well formed."""


@dataclass(frozen=True)
class Verdict:
    """The policy's answer for one pod over one node set."""

    eligible: frozenset[str]
    unresolvable: Mapping[str, str] = field(default_factory=dict)
    resolvable: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Candidates:
    pod: Mapping[str, Any]
    uid: str
    namespace: str
    names: list[str]
    objects: list[Mapping[str, Any]] | None  # the Nodes items, when the scheduler sent objects
    labels: Mapping[str, Mapping[str, str]]


def _reason_text(reasons: Sequence[Mapping[str, Any]] | Sequence[Any]) -> str:
    parts = []
    for r in reasons:
        code = r.get("code", "") if isinstance(r, Mapping) else getattr(r, "code", "")
        message = r.get("message", "") if isinstance(r, Mapping) else getattr(r, "message", "")
        parts.append(f"{code}: {message}")
    return "; ".join(parts) or "rejected by gpupaas policy"


def parse_args(args: Any, cluster: ClusterView | None) -> _Candidates:
    """The pod and candidate nodes of ExtenderArgs (pure, given the cluster view)."""
    if not isinstance(args, Mapping):
        raise BadArgs("the extender arguments are not a JSON object")
    pod = args.get("Pod")
    if not isinstance(pod, Mapping):
        raise BadArgs("Pod is missing")
    metadata = pod.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    namespace = metadata.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        raise BadArgs("Pod.metadata.namespace is missing")
    given = metadata.get("uid")
    uid = given if isinstance(given, str) and given else f"{namespace}/{metadata.get('name')}"
    names: list[str] = []
    labels: Mapping[str, Mapping[str, str]] = {}
    objects: list[Mapping[str, Any]] | None = None
    found: dict[str, Mapping[str, str]] = {}
    if args.get("NodeNames") is not None:
        node_names = args["NodeNames"]
        if not isinstance(node_names, list) or not all(isinstance(n, str) and n for n in node_names):
            raise BadArgs("NodeNames is not a list of node names")
        if node_names and cluster is None:
            raise BadArgs("NodeNames needs the extender's cluster view (run it with a kubeconfig)")
        names = list(node_names)
        if cluster is not None:
            labels = _labels_of(cluster, names)
    elif args.get("Nodes") is not None:
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
    # (Nodes: one labels entry per distinct name already, no second set of names to build.)
    if len(found if objects is not None else set(names)) != len(names):
        raise BadArgs("the candidate nodes repeat a name")
    return _Candidates(pod, uid, namespace, names, objects, labels)


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
    """The verdict on each group's first node applied to every member, with reasons renamed (pure)."""
    eligible = frozenset(m for first in verdict.eligible for m in groups.get(first, (first,)))
    unresolvable: dict[str, str] = {}
    for first, text in verdict.unresolvable.items():
        members = groups.get(first, (first,))
        pieces = text.split(f'"{first}"')  # the text around each mention of the first node
        if len(pieces) == 1:
            unresolvable.update(dict.fromkeys(members, text))
        else:
            unresolvable.update((m, f'"{m}"'.join(pieces)) for m in members)
    return Verdict(eligible, unresolvable, verdict.resolvable)


def filter_result(candidates: _Candidates, verdict: Verdict, error: str = "") -> dict[str, Any]:
    """ExtenderFilterResult in the shape of the arguments (pure)."""
    eligible = verdict.eligible
    result: dict[str, Any] = {
        "FailedNodes": dict(verdict.resolvable),
        "FailedAndUnresolvableNodes": dict(verdict.unresolvable),
        "Error": error,
    }
    if candidates.objects is not None:
        result["Nodes"] = {
            "items": [o for n, o in zip(candidates.names, candidates.objects, strict=True) if n in eligible]
        }
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


class _VerdictCache:
    """The last verdicts per (pod uid, node set): prioritize follows filter in the same cycle."""

    def __init__(self, size: int = 256, ttl: float = 30.0) -> None:
        self._size = size
        self._ttl = ttl
        self._entries: OrderedDict[tuple[str, frozenset[str]], tuple[float, Verdict]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, frozenset[str]]) -> Verdict | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if time.monotonic() - entry[0] > self._ttl:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: tuple[str, frozenset[str]], verdict: Verdict) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic(), verdict)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


class SchedulerExtender:
    def __init__(
        self,
        point: DecisionPoint,
        cluster: ClusterView | None = None,
        *,
        timeout: float = EXTENDER_TIMEOUT,
        cache_size: int = 256,
        cache_ttl: float = 30.0,
    ) -> None:
        self.point = point
        self.cluster = cluster
        self.timeout = timeout
        self._cache = _VerdictCache(cache_size, cache_ttl)
        self._shapes = ShapeCache()

    def _verdict(self, c: _Candidates) -> Verdict:
        names = c.names[:MAX_NODES] if len(c.names) > MAX_NODES else c.names
        # Beyond the schema's limit nodes are not judged this cycle; resolvable, since a later
        # cycle with fewer candidates can judge them.
        overflow = {
            n: f"gpupaas: not evaluated, more than {MAX_NODES} candidate nodes" for n in c.names[MAX_NODES:]
        }
        # The scheduler places one pod at a time: judge it as a Pod whatever its TypeMeta says
        # (the scheduler's Go struct often leaves it empty).
        pod = {**c.pod, "kind": "Pod"}
        try:
            workload = workload_from_object(pod, c.namespace)
        except (InvalidObject, UnsupportedObject) as exc:
            raise BadArgs(f"Pod: {exc}") from exc
        if not names:
            return Verdict(frozenset(), {}, overflow)
        if not needs_policy(workload):
            # Same rule as admission: pods that ask for no GPUs and touch no platform constraint
            # are not the policy's business (and must schedule while the engine is down).
            return Verdict(frozenset(names), {}, overflow)
        deadline = time.monotonic() + self.timeout * 0.9
        try:
            # The workload comes from the request: check it. The node list is built here from
            # strings, so validating thousands of entries again would only cost time.
            validate_intent(place_intent(workload, []))
        except InvalidIntent as exc:
            raise BadArgs(f"Pod: {exc}") from exc
        occupants = _occupants(self.cluster, names, c.uid) if self.cluster is not None else None
        groups = group_by_shape(names, c.labels, occupants, self._shapes)
        shapes = []
        for first in groups:
            shape: dict[str, Any] = {"name": first, "labels": string_labels(c.labels.get(first))}
            if occupants is not None:
                shape["namespaces"] = occupants.get(first, [])
            shapes.append(shape)
        options = DecideOptions(deadline=deadline, validated=True, entry_point="extender")
        decision = self.point.decide(place_intent(workload, shapes), options)
        verdict = expand_verdict(verdict_from_decision(decision, list(groups)), groups)
        return Verdict(verdict.eligible, verdict.unresolvable, {**verdict.resolvable, **overflow})

    def _cached_verdict(self, c: _Candidates) -> Verdict:
        key = (c.uid, frozenset(c.names))
        verdict = self._cache.get(key)
        if verdict is None:
            verdict = self._verdict(c)
            self._cache.put(key, verdict)
        return verdict

    def filter(self, args: Any) -> dict[str, Any]:
        """ExtenderFilterResult for ExtenderArgs; never raises: malformed args set Error."""
        started = time.monotonic()
        try:
            candidates = parse_args(args, self.cluster)
            verdict = self._verdict(candidates)
        except BadArgs as exc:
            metrics.extender_answered("filter", "error", started)
            return error_result(str(exc))
        if candidates.names:
            self._cache.put((candidates.uid, frozenset(candidates.names)), verdict)
        result = filter_result(candidates, verdict)
        refused = len(verdict.eligible) < len(candidates.names)  # eligible is a subset of names
        metrics.extender_answered("filter", "filtered" if refused else "all_eligible", started)
        return result

    def prioritize(self, args: Any) -> list[dict[str, Any]]:
        """HostPriorityList: MAX_SCORE for eligible nodes, 0 otherwise; reuses filter's verdict."""
        started = time.monotonic()
        try:
            candidates = parse_args(args, self.cluster)
            verdict = self._cached_verdict(candidates) if candidates.names else Verdict(frozenset())
        except BadArgs:
            metrics.extender_answered("prioritize", "error", started)
            return []
        refused = set(candidates.names) - verdict.eligible
        metrics.extender_answered("prioritize", "filtered" if refused else "all_eligible", started)
        return [{"Host": n, "Score": MAX_SCORE if n in verdict.eligible else 0} for n in candidates.names]


def _json_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"the body is not JSON: {exc}") from exc


class ExtenderServer(HttpService):
    """HTTP (HTTPS with a certificate, reloaded like the webhook's) for kube-scheduler's extender
    calls."""

    def __init__(
        self,
        extender: SchedulerExtender,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        max_body: int = 64 * 1024 * 1024,
        cert_poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        self.extender = extender
        tls = (
            ServingCertificate(cert_file, key_file, poll_interval=cert_poll_interval)
            if cert_file and key_file
            else None
        )
        self._http = JsonHttpServer(
            {
                "/filter": lambda body, _q, _t: extender.filter(_json_body(body)),
                "/prioritize": lambda body, _q, _t: extender.prioritize(_json_body(body)),
            },
            host=host,
            port=port,
            ssl_context=tls,
            max_body=max_body,
            name="gpupaas-extender",
            listen_option="--extender-listen",
        )

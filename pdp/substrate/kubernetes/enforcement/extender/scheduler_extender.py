"""The scheduler extender's verbs: filter, prioritize and preempt, each judged with one
`place_workload` decision over the pod's candidate nodes (`question`), read from and answered on
the wire (`wire`, `preemption`), the verdict (`verdict`) kept for prioritize.

Over HTTP a body is read and answered by `filter_json` / `prioritize_json` without decoding the
nodes the policy does not look at (`wire.read_args`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from pdp import metrics
from pdp.decision import Decision
from pdp.intents import InvalidIntent, validate_intent
from pdp.net.jsonhttp import HttpError
from pdp.point import DecisionPoint
from pdp.substrate.kubernetes.enforcement.extender.preemption import (
    Preemption,
    parse_preemption,
    preemption_result,
)
from pdp.substrate.kubernetes.enforcement.extender.question import PlacementQuestion
from pdp.substrate.kubernetes.enforcement.extender.verdict import (
    Verdict,
    VerdictCache,
    expand_verdict,
    place_intent,
    verdict_from_decision,
)
from pdp.substrate.kubernetes.enforcement.extender.wire import (
    BadArgs,
    Candidates,
    ClusterView,
    encode,
    error_result,
    filter_result,
    parse_args,
    read_args,
)
from pdp.substrate.kubernetes.enforcement.shapes import (
    LabelsKey,
    Projection,
    ShapeCache,
    label_keys_read,
    named_nodes,
)
from pdp.substrate.kubernetes.enforcement.workloads import (
    InvalidObject,
    UnsupportedObject,
    needs_policy,
    workload_from_object,
)

MAX_NODES = 20000  # the intent schema's place_workload.nodes maxItems
MAX_SCORE = 10  # kube-scheduler's MaxExtenderPriority
EXTENDER_TIMEOUT = 5.0  # kube-scheduler's default extender httpTimeout
# A Nodes body's labels are read on the label keys the policy reads (wire.read_args) once
# their texts average this many bytes. 5,000 nodes (bench.extender_read, in a loop): real nodes'
# labels (~36, 1.5 KB, their own hostname and instance id) 6-7 ms read so against 9-11 ms keyed by
# text; 500 B (tests' realistic fleet) 3.6-4.7 against 4.3-8.5 ms; the bench's few 240 B texts are
# cheaper keyed by text (2.0 against 2.2 ms, 1.8 ms of server CPU per request over HTTP).
# Decided on the last body keyed by text; once cut, a body is not keyed by text again.
CUT_FROM = 400.0


def _occupants(
    cluster: ClusterView, names: Sequence[str], uid: str, gone: frozenset[str] = frozenset()
) -> dict[str, list[str]]:
    """Namespaces on each occupied candidate (in one read where the view offers it), the pods
    in `gone` (a preemption's victims) left out. A view without that read counts the victims as
    staying: the policy's occupancy rules only refuse nodes, so that can refuse a preemption the
    policy would allow, never allow one it would refuse."""
    bulk = getattr(cluster, "occupants", None)
    if bulk is not None:
        return bulk(names, uid, gone) if gone else bulk(names, uid)  # type: ignore[no-any-return]
    found = {name: cluster.namespaces_on(name, exclude_pod_uid=uid) for name in names}
    return {name: namespaces for name, namespaces in found.items() if namespaces}


class SchedulerExtender:
    def __init__(
        self,
        point: DecisionPoint,
        cluster: ClusterView | None = None,
        *,
        timeout: float = EXTENDER_TIMEOUT,
        cache_size: int = 256,
        cache_ttl: float = 30.0,
        cut_from: float = CUT_FROM,
    ) -> None:
        self.point = point
        self.cluster = cluster
        self.timeout = timeout
        self._cache = VerdictCache(cache_size, cache_ttl)
        self._shapes = ShapeCache()
        # The node label keys the policy last reported reading (shapes.Projection); None while
        # unknown (whole labels are sent then).
        self._projection: Projection | None = None
        self._probed = False
        # Labels texts at least this long (mean bytes) are read on the read keys (read_args).
        self._cut_from = cut_from

    def _verdict(self, c: Candidates, caller: str | None, gone: frozenset[str] = frozenset()) -> Verdict:
        """`caller`: who asked as the client certificate says (the decision log's `principal`);
        `gone`: the pods a preemption would evict, judged as if they were."""
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
            no_nodes = place_intent(workload, [])
            validate_intent(no_nodes)
        except InvalidIntent as exc:
            raise BadArgs(f"Pod: {exc}") from exc
        occupants = _occupants(self.cluster, names, c.uid, gone) if self.cluster is not None else None
        candidates = c.unique if c.unique is not None else c.labels
        alone = named_nodes(no_nodes, candidates)
        # What the tenant holds now, per node shape: the policy holds each class to its entitlement.
        holds, gpus = getattr(self.cluster, "held", None), workload.get("resources")
        if holds is not None and gpus:
            workload = {**workload, "held": holds(c.namespace, c.uid, self._project)}
        ask = PlacementQuestion(self.point, workload, names, occupants, alone, deadline, caller)
        decision, groups = self._decide(ask, self._keys_for(c, len(names)))
        judged = verdict_from_decision(decision, list(groups))
        allow = getattr(self.cluster, "allow", None)
        if allow is not None and gpus and judged.eligible:
            allow(c.uid, c.namespace, gpus, [ask.shape_labels[first] for first in judged.eligible])
        verdict = expand_verdict(judged, groups)
        return Verdict(verdict.eligible, verdict.unresolvable, {**verdict.resolvable, **overflow})

    def _project(self, labels: Mapping[str, str]) -> Mapping[str, str]:
        """Node labels cut to the keys the policy reads, once known."""
        keys = self._projection.keys if self._projection is not None else None
        return labels if keys is None else {k: v for k, v in labels.items() if k in keys}

    def _keys_for(self, c: Candidates, count: int) -> Callable[[Projection | None], Sequence[LabelsKey]]:
        """The first `count` candidates' labels keys cut to a projection's label keys (None:
        whole labels): as read, when the body was read on those keys (`read_args`)."""
        whole: list[Sequence[LabelsKey]] = []

        def whole_keys() -> Sequence[LabelsKey]:
            if not whole:
                if c.keys is not None and c.cut_to is None:
                    whole.append(c.keys[:count])
                elif c.whole_keys is not None:
                    whole.append(c.whole_keys()[:count])
                else:
                    replaced = getattr(self.cluster, "labels_replaced", False) is True
                    whole.append(self._shapes.keys_of(c.names[:count], c.labels, replaced=replaced))
            return whole[0]

        def keys_for(projection: Projection | None) -> Sequence[LabelsKey]:
            if projection is not None and c.keys is not None and c.cut_to == projection.keys:
                return c.keys[:count]
            return projection.project(whole_keys()) if projection is not None else whole_keys()

        return keys_for

    def _decide(
        self, ask: PlacementQuestion, keys_for: Callable[[Projection | None], Sequence[LabelsKey]]
    ) -> tuple[Decision, dict[str, list[str]]]:
        """The decision on the candidates grouped on the label keys the policy reads, taken only
        when it reports reading no other key; whole labels when the policy reports none."""
        projection = self._projection
        if projection is None and not self._probed:
            # Which keys does the policy read? Asked on no node (not a decision), until the
            # policy has answered, so that not even the first cycle sends thousands of
            # whole-labels shapes, whose evaluation could outlast the scheduler's timeout on a
            # large fleet (a policy that reports none is not asked again).
            self._probed, read = ask.probe()
            projection = self._projection = Projection(read) if read is not None else None
        for _ in range(2):
            if projection is None:
                break
            decision, groups = ask(keys_for(projection))
            read = label_keys_read(decision.constraints)
            if read is not None and read <= projection.keys:
                if read != projection.keys:
                    self._projection = Projection(read)
                return decision, groups
            if decision.engine_failed:
                return decision, groups  # fails every node, whatever labels were sent
            # The policy reads a key the projection dropped (a new bundle), or reports none: this
            # decision proves nothing. Ask again on the keys it reports (or whole labels).
            projection = self._projection = Projection(read) if read is not None else None
        decision, groups = ask(keys_for(None))
        read = label_keys_read(decision.constraints)
        self._projection = Projection(read) if read is not None else None
        return decision, groups

    def _cached_verdict(self, c: Candidates, caller: str | None) -> Verdict:
        names = c.unique if c.unique is not None else frozenset(c.names)
        verdict = self._cache.get(c.uid, names)
        if verdict is None:
            verdict = self._verdict(c, caller)
            self._cache.put(c.uid, names, verdict)
        return verdict

    def _filter(
        self, read: Callable[[], Candidates], started: float, caller: str | None = None
    ) -> dict[str, Any]:
        try:
            candidates = read()
            verdict = self._verdict(candidates, caller)
        except BadArgs as exc:
            metrics.extender_answered("filter", "error", started)
            return error_result(str(exc))
        if candidates.names:
            unique = candidates.unique if candidates.unique is not None else frozenset(candidates.names)
            self._cache.put(candidates.uid, unique, verdict)
        result = filter_result(candidates, verdict)
        refused = len(verdict.eligible) < len(candidates.names)  # eligible is a subset of names
        metrics.extender_answered("filter", "filtered" if refused else "all_eligible", started)
        return result

    def _prioritize(
        self, read: Callable[[], Candidates], started: float, caller: str | None = None
    ) -> list[dict[str, Any]]:
        try:
            candidates = read()
            verdict = self._cached_verdict(candidates, caller) if candidates.names else Verdict(frozenset())
        except BadArgs:
            metrics.extender_answered("prioritize", "error", started)
            return []
        eligible = verdict.eligible
        refused = len(eligible) < len(candidates.names)
        metrics.extender_answered("prioritize", "filtered" if refused else "all_eligible", started)
        return [{"Host": n, "Score": MAX_SCORE if n in eligible else 0} for n in candidates.names]

    def _preempt(
        self, read: Callable[[], Preemption], started: float, caller: str | None = None
    ) -> dict[str, Any]:
        """Never cached: the verdict of a cycle with the victims still in place is another one."""
        try:
            preemption = read()
            verdict = self._verdict(preemption.candidates, caller, preemption.gone)
        except BadArgs:
            metrics.extender_answered("preempt", "error", started)
            raise
        result = preemption_result(preemption, verdict)
        refused = len(result["NodeNameToMetaVictims"]) < len(preemption.victims)
        metrics.extender_answered("preempt", "filtered" if refused else "all_eligible", started)
        return result

    def filter(self, args: Any) -> dict[str, Any]:
        """ExtenderFilterResult for decoded ExtenderArgs; never raises: malformed args set Error."""
        return self._filter(lambda: parse_args(args, self.cluster), time.monotonic())

    def prioritize(self, args: Any) -> list[dict[str, Any]]:
        """HostPriorityList: MAX_SCORE for eligible nodes, 0 otherwise; reuses filter's verdict."""
        return self._prioritize(lambda: parse_args(args, self.cluster), time.monotonic())

    def preempt(self, args: Any) -> dict[str, Any]:
        """ExtenderPreemptionResult for decoded ExtenderPreemptionArgs; BadArgs if malformed
        (ExtenderPreemptionResult has no Error: over HTTP that is a 400, and kube-scheduler,
        the extender not being ignorable, then preempts nothing)."""
        return self._preempt(lambda: parse_preemption(args, self.cluster), time.monotonic())

    def preempt_json(self, body: bytes, caller: str | None = None) -> bytes:
        """`preempt` of an ExtenderPreemptionArgs body, answered as JSON; HttpError 400 if it is
        not JSON or not well formed."""
        args = _json_body(body)
        try:
            return encode(
                self._preempt(lambda: parse_preemption(args, self.cluster), time.monotonic(), caller)
            )
        except BadArgs as exc:
            raise HttpError(400, str(exc)) from exc

    def filter_json(self, body: bytes, caller: str | None = None) -> bytes:
        """`filter` of an ExtenderArgs body, answered as JSON; HttpError 400 if it is not JSON.
        `caller`: who asked as the client certificate says (the decision log's `principal`)."""
        return encode(self._filter(lambda: self._read(body), time.monotonic(), caller))

    def prioritize_json(self, body: bytes, caller: str | None = None) -> bytes:
        """`prioritize` of an ExtenderArgs body, answered as JSON; HttpError 400 if it is not JSON."""
        return encode(self._prioritize(lambda: self._read(body), time.monotonic(), caller))

    def _read(self, body: bytes) -> Candidates:
        projection = self._projection
        long_labels = self._shapes.text_size >= self._cut_from
        read = projection.keys if projection is not None and long_labels else None
        candidates = read_args(body, self.cluster, self._shapes, read)
        if candidates is None:  # not the common case: read it whole, for the error to name
            candidates = parse_args(_json_body(body), self.cluster)
        return candidates


def _json_body(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"the body is not JSON: {exc}") from exc

"""The kube-scheduler extender: node-level placement policy (residency, dedicated pools, node
occupancy, sharing) decided per scheduling cycle with one `place_workload` decision.

Policy rejections go to FailedAndUnresolvableNodes: preempting pods cannot make a node of the
wrong region or another tenant's pool acceptable, so the scheduler must not try.

The wire format is `extender_wire`'s, the verdict `extender_verdict`'s; over HTTP a body is read
and answered by `filter_json` / `prioritize_json` without decoding the nodes the policy does not
look at (`extender_wire.read_args`).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from pdp import metrics
from pdp.intents import InvalidIntent, validate_intent
from pdp.net.jsonhttp import HttpError, HttpService, JsonHttpServer
from pdp.net.servingcert import DEFAULT_POLL_INTERVAL, ServingCertificate
from pdp.point import DecideOptions, DecisionPoint
from pdp.substrate.kubernetes.enforcement.extender_verdict import (
    Verdict,
    expand_verdict,
    group_nodes,
    place_intent,
    verdict_from_decision,
)
from pdp.substrate.kubernetes.enforcement.extender_wire import (
    BadArgs,
    Candidates,
    ClusterView,
    encode,
    error_result,
    filter_result,
    parse_args,
    read_args,
)
from pdp.substrate.kubernetes.enforcement.shapes import ShapeCache, group_by_shape, shape_labels
from pdp.substrate.kubernetes.enforcement.workloads import (
    InvalidObject,
    UnsupportedObject,
    needs_policy,
    workload_from_object,
)

__all__ = [
    "MAX_NODES",
    "MAX_SCORE",
    "BadArgs",
    "ClusterView",
    "ExtenderServer",
    "SchedulerExtender",
    "Verdict",
    "expand_verdict",
    "group_nodes",
    "place_intent",
    "verdict_from_decision",
]

MAX_NODES = 20000  # the intent schema's place_workload.nodes maxItems
MAX_SCORE = 10  # kube-scheduler's MaxExtenderPriority
EXTENDER_TIMEOUT = 5.0  # kube-scheduler's default extender httpTimeout


def _occupants(cluster: ClusterView, names: Sequence[str], uid: str) -> dict[str, list[str]]:
    """Namespaces on each occupied candidate (in one read where the view offers it)."""
    bulk = getattr(cluster, "occupants", None)
    if bulk is not None:
        return bulk(names, uid)  # type: ignore[no-any-return]
    found = {name: cluster.namespaces_on(name, exclude_pod_uid=uid) for name in names}
    return {name: namespaces for name, namespaces in found.items() if namespaces}


class _VerdictCache:
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

    def _verdict(self, c: Candidates) -> Verdict:
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
        if c.keys is not None:
            keys = c.keys[: len(names)]
        else:
            replaced = getattr(self.cluster, "labels_replaced", False) is True
            keys = self._shapes.keys_of(names, c.labels, replaced=replaced)
        groups, labels = group_by_shape(names, keys, occupants)
        shapes = []
        for first in groups:
            shape: dict[str, Any] = {"name": first, "labels": shape_labels(labels[first])}
            if occupants is not None:
                shape["namespaces"] = occupants.get(first, [])
            shapes.append(shape)
        options = DecideOptions(deadline=deadline, validated=True, entry_point="extender")
        decision = self.point.decide(place_intent(workload, shapes), options)
        verdict = expand_verdict(verdict_from_decision(decision, list(groups)), groups)
        return Verdict(verdict.eligible, verdict.unresolvable, {**verdict.resolvable, **overflow})

    def _cached_verdict(self, c: Candidates) -> Verdict:
        names = c.unique if c.unique is not None else frozenset(c.names)
        verdict = self._cache.get(c.uid, names)
        if verdict is None:
            verdict = self._verdict(c)
            self._cache.put(c.uid, names, verdict)
        return verdict

    def _filter(self, read: Callable[[], Candidates], started: float) -> dict[str, Any]:
        try:
            candidates = read()
            verdict = self._verdict(candidates)
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

    def _prioritize(self, read: Callable[[], Candidates], started: float) -> list[dict[str, Any]]:
        try:
            candidates = read()
            verdict = self._cached_verdict(candidates) if candidates.names else Verdict(frozenset())
        except BadArgs:
            metrics.extender_answered("prioritize", "error", started)
            return []
        eligible = verdict.eligible
        refused = len(eligible) < len(candidates.names)
        metrics.extender_answered("prioritize", "filtered" if refused else "all_eligible", started)
        return [{"Host": n, "Score": MAX_SCORE if n in eligible else 0} for n in candidates.names]

    def filter(self, args: Any) -> dict[str, Any]:
        """ExtenderFilterResult for decoded ExtenderArgs; never raises: malformed args set Error."""
        return self._filter(lambda: parse_args(args, self.cluster), time.monotonic())

    def prioritize(self, args: Any) -> list[dict[str, Any]]:
        """HostPriorityList: MAX_SCORE for eligible nodes, 0 otherwise; reuses filter's verdict."""
        return self._prioritize(lambda: parse_args(args, self.cluster), time.monotonic())

    def filter_json(self, body: bytes) -> bytes:
        """`filter` of an ExtenderArgs body, answered as JSON; HttpError 400 if it is not JSON."""
        return encode(self._filter(lambda: self._read(body), time.monotonic()))

    def prioritize_json(self, body: bytes) -> bytes:
        """`prioritize` of an ExtenderArgs body, answered as JSON; HttpError 400 if it is not JSON."""
        return encode(self._prioritize(lambda: self._read(body), time.monotonic()))

    def _read(self, body: bytes) -> Candidates:
        candidates = read_args(body, self.cluster, self._shapes)
        if candidates is None:  # not the common case: read it whole, for the error to name
            candidates = parse_args(_json_body(body), self.cluster)
        return candidates


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
        inline: bool | None = None,
    ) -> None:
        """`inline`: answer on the event loop rather than on a thread; by default when deciding
        only uses the CPU (the wasm engine, no durable record), as the webhook does."""
        self.extender = extender
        tls = (
            ServingCertificate(cert_file, key_file, poll_interval=cert_poll_interval)
            if cert_file and key_file
            else None
        )
        self._http = JsonHttpServer(
            {
                "/filter": lambda body, _q, _t: extender.filter_json(body),
                "/prioritize": lambda body, _q, _t: extender.prioritize_json(body),
            },
            host=host,
            port=port,
            ssl_context=tls,
            max_body=max_body,
            name="gpupaas-extender",
            listen_option="--extender-listen",
            inline=not extender.point.waits_on_io if inline is None else inline,
        )

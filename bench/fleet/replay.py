"""The replay: the trace's tasks arrive at their (compressed) creation times as pods in their
tenants' namespaces and are deleted at their deletion times, nodes fail on schedule, and a watch on
the API server keeps the state the promises are checked on.

A pod evicted from a failed node is re-created once, as a workload controller would, so the report
can say whether it found a place again within its tenant's promises.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from bench.fleet.mapping import Arrival, Plan
from bench.fleet.promises import EVICTED, PodView, Violation, check, pod_view
from bench.fleet.world import LivingFleet
from pdp.substrate.labels import TIER_PRIORITY_CLASS

# The longest the replay clock waits for the cluster to settle before it goes on anyway.
MAX_STALL_SECONDS = 5.0
_CODE = re.compile(r"\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b")


def refusal_reason(exc: ApiException) -> str:
    """A short, stable name for why the API server refused a pod: the PDP's reason codes, a
    quota, or the status."""
    body = str(exc.body or exc.reason or "")
    with contextlib.suppress(ValueError, AttributeError):  # not a Status: the text as it is
        body = str(json.loads(body).get("message", body))
    if "exceeded quota" in body:
        return "ResourceQuota exceeded"
    codes = sorted(set(_CODE.findall(body)))
    return ", ".join(codes) if codes else f"HTTP {exc.status}"


@dataclass(frozen=True)
class Failure:
    """At a point of the replay (a fraction of its length), the `nodes` that then hold the most
    enterprise pods fail: the failures that test the most promises."""

    at_fraction: float
    nodes: int


@dataclass
class Sample:
    at: float
    gpus_by_tier: dict[str, float]
    pending_by_tier: dict[str, int]


@dataclass
class RunResult:
    with_pdp: bool
    wall_seconds: float = 0.0
    stalled_seconds: float = 0.0  # wall time the replay clock waited for the cluster to settle
    forced_seconds: float = 0.0  # replay time that went on unsettled (MAX_STALL_SECONDS passed)
    views: dict[str, PodView] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    refused_by_tier: Counter[str] = field(default_factory=Counter)
    samples: list[Sample] = field(default_factory=list)
    violations: dict[tuple[str, str], Violation] = field(default_factory=dict)
    evicted: list[str] = field(default_factory=list)
    failed_nodes: list[str] = field(default_factory=list)
    submit_errors: list[str] = field(default_factory=list)


class Replay:
    def __init__(
        self,
        fleet: LivingFleet,
        plan: Plan,
        seconds: float,
        failures: tuple[Failure, ...] = (),
        sample_seconds: float = 2.0,
        workers: int = 8,
        log: Callable[[str], None] = print,
    ) -> None:
        self.fleet, self.plan, self.failures, self.log = fleet, plan, failures, log
        span = plan.span
        self.origin = min((a.at for a in plan.arrivals), default=0.0)
        self.compress = max(span / seconds, 1e-9) if span else 1.0
        self.seconds = seconds
        self.sample_seconds = sample_seconds
        self.workers = workers
        self.result = RunResult(fleet.with_pdp)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._start = 0.0
        self._virtual = 0.0  # the replay clock: trace time / compress, stopped while unsettled
        self._inflight = 0
        self._unsettled_since: float | None = None
        self._failed_at = 0.0
        self._tenant_of_ns = {t.namespace: t for t in plan.tenants.values()}
        self._arrival_of: dict[str, Arrival] = {}
        self._nodes = {p.node.name: p for p in plan.nodes}
        self._jurisdictions = {n: c["jurisdiction"] for n, c in plan.mapping["clusters"].items()}
        self._entitlements = {n: p["entitlements"] for n, p in plan.policies.items()}
        self._replicas = int(plan.mapping["pools"]["sharing_replicas"])

    def now(self) -> float:
        return time.monotonic() - self._start

    # -- the watch ------------------------------------------------------------------------------
    def _watch(self, resource_version: str) -> None:
        core = self.fleet.core
        while not self._done.is_set():
            try:
                # Short watches: the end of the run waits for this thread, which notices the end
                # only at the next event or when the watch times out.
                resp = core.list_pod_for_all_namespaces(
                    watch=True, resource_version=resource_version, timeout_seconds=3, _preload_content=False
                )
                for line in iter_resp_lines(resp):
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        resource_version = ""
                        break
                    resource_version = obj["metadata"]["resourceVersion"]
                    self._apply(event["type"], obj)
                    if self._done.is_set():
                        break
                resp.release_conn()
            except Exception as exc:  # a dropped watch is resumed; the replay goes on
                self.log(f"watch: {exc!r:.200}")
                time.sleep(0.5)
            if not resource_version:
                resource_version = self.fleet.core.list_pod_for_all_namespaces(
                    limit=1
                ).metadata.resource_version

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        seen = pod_view(obj)
        key = f"{seen.namespace}/{seen.name}"
        now = self.now()
        evicted = None
        with self._lock:
            view = self.result.views.get(key)
            if view is None:
                return  # not the replay's (or refused after the watch saw it: cannot happen)
            view.node, view.phase, view.disruption = seen.node, seen.phase, seen.disruption or view.disruption
            view.unschedulable = seen.unschedulable
            view.unschedulable_why = seen.unschedulable_why or view.unschedulable_why
            if view.node and view.bound is None:
                view.bound = now
            if kind == "DELETED" and view.ended is None:
                view.ended = now
                if not view.deleted_by_replay and view.disruption == EVICTED:
                    evicted = key
        if evicted:
            self.result.evicted.append(evicted)
            self._replace(evicted)

    # -- submissions ----------------------------------------------------------------------------
    def _create(self, pod: dict[str, Any], arrival: Arrival, replaces: str = "") -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        with self._lock:
            self.result.views[key] = PodView(
                meta["name"], meta["namespace"], priority_class=pod["spec"]["priorityClassName"],
                resources={k: int(v) for k, v in pod["spec"]["containers"][0]["resources"]["limits"].items()},
                created=self.now(), replaces=replaces,
            )  # fmt: skip
            self._arrival_of[key] = arrival
        try:
            try:
                self.fleet.core.create_namespaced_pod(meta["namespace"], pod, _request_timeout=30)
            except ApiException as exc:
                if exc.status != 409:  # 409: created already, its answer lost (world._create_nodes)
                    raise
            with self._lock:
                view = self.result.views[key]
                view.created_ok = True
                delete_now = view.delete_requested
            if delete_now:  # its deletion time came while the API server was still creating it
                self._delete(key)
        except ApiException as exc:
            with self._lock:
                self.result.views.pop(key, None)
            if exc.status in (400, 403, 422):
                reason = refusal_reason(exc)
                self.result.refused[reason] += 1
                self.result.refused_by_tier[arrival.tenant.tier] += 1
            else:
                self.result.submit_errors.append(f"{key}: {exc.status} {exc.reason}")
        except Exception as exc:
            with self._lock:
                self.result.views.pop(key, None)
            self.result.submit_errors.append(f"{key}: {exc!r:.200}")

    def _delete(self, key: str) -> None:
        with self._lock:
            view = self.result.views.get(key)
            if view is None or view.ended is not None:
                return
            if not view.created_ok:  # still being created by another worker: it deletes it after
                view.delete_requested = True
                return
            view.deleted_by_replay = True
        namespace, name = key.split("/", 1)
        try:
            self.fleet.core.delete_namespaced_pod(
                name, namespace, grace_period_seconds=0, _request_timeout=30
            )
        except ApiException as exc:
            if exc.status != 404:
                self.result.submit_errors.append(f"delete {key}: {exc.status} {exc.reason}")

    def _replace(self, key: str) -> None:
        arrival = self._arrival_of[key]
        pod = copy.deepcopy(arrival.pod)
        pod["metadata"]["name"] = (
            f"{pod['metadata']['name']}-r{sum(1 for k in self._arrival_of if k.startswith(key))}"
        )
        self._submit(self._create, pod, arrival, key)

    # -- sampling -------------------------------------------------------------------------------
    def _sample(self) -> None:
        with self._lock:
            views = [copy.copy(v) for v in self.result.views.values()]
        gpus: dict[str, float] = defaultdict(float)
        pending: dict[str, int] = defaultdict(int)
        for v in views:
            tenant = self._tenant_of_ns[v.namespace]
            if v.holds_capacity:
                gpus[tenant.tier] += (
                    v.resources.get("nvidia.com/gpu", 0)
                    + v.resources.get("nvidia.com/gpu.shared", 0) / self._replicas
                )
            elif not v.node and v.ended is None:
                pending[tenant.tier] += 1
        self.result.samples.append(Sample(self.now(), dict(gpus), dict(pending)))
        for violation in check(
            views, self._nodes, self._tenant_of_ns, self._entitlements, self._jurisdictions,
            self._replicas, TIER_PRIORITY_CLASS["spot"],
        ):  # fmt: skip
            self.result.violations.setdefault((violation.check, violation.pod), violation)

    # -- the run --------------------------------------------------------------------------------
    # -- the replay clock -----------------------------------------------------------------------
    def settled(self) -> bool:
        """Every submission answered, and every pod accepted either placed, found unschedulable by
        the scheduler, or gone."""
        with self._lock:
            if self._inflight:
                return False
            return all(
                v.bound is not None or v.unschedulable or v.ended is not None
                for v in self.result.views.values()
                if v.created_ok
            )

    def _tick(self, last: float) -> float:
        """Advance the replay clock by the wall time since `last` if the cluster has settled: it
        stops while the control plane digests what arrived, so a task lasting milliseconds of
        replay time is still placed before its deletion, and the pods running at any moment are
        the trace's, whatever the control plane's speed (which the pending times measure)."""
        now = time.monotonic()
        if self.settled():
            self._unsettled_since = None
            self._virtual += now - last
        elif self._unsettled_since is None:
            self._unsettled_since = now
        elif now - self._unsettled_since > MAX_STALL_SECONDS:
            # A pod the scheduler never gets to must not stop the replay: time goes on, counted.
            self.result.forced_seconds += now - last
            self._virtual += now - last
        else:
            self.result.stalled_seconds += now - last
        return now

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            self._inflight += 1

        def run() -> None:
            try:
                fn(*args)
            finally:
                with self._lock:
                    self._inflight -= 1

        self._pool.submit(run)

    def run(self) -> RunResult:
        events: list[tuple[float, int, str, Arrival]] = []
        for a in self.plan.arrivals:
            events.append(((a.at - self.origin) / self.compress, 1, "create", a))
            if a.at < a.until < math.inf:
                events.append(((a.until - self.origin) / self.compress, 0, "delete", a))
        events.sort(key=lambda e: (e[0], e[1]))
        failures = sorted(self.failures, key=lambda f: f.at_fraction)
        rv = self.fleet.core.list_pod_for_all_namespaces(limit=1).metadata.resource_version
        self._start = time.monotonic()
        watcher = threading.Thread(target=self._watch, args=(rv,), name="replay-watch", daemon=True)
        watcher.start()
        next_sample = 0.0
        last = time.monotonic()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="replay-submit") as pool:
            self._pool = pool
            for at, _, what, arrival in events:
                while failures and failures[0].at_fraction * self.seconds <= at:
                    self._fail(failures.pop(0))
                while self._virtual < at:
                    if self.now() >= next_sample:
                        self._sample()
                        next_sample = self.now() + self.sample_seconds
                    time.sleep(min(at - self._virtual, 0.02))
                    last = self._tick(last)
                key = f"{arrival.pod['metadata']['namespace']}/{arrival.pod['metadata']['name']}"
                if what == "create":
                    self._submit(self._create, arrival.pod, arrival)
                else:
                    self._submit(self._delete, key)
            for failure in failures:
                self._fail(failure)
            # The last pods placed, the evictions and their re-placements settle: at most three
            # grace periods, and no sooner than a failed node's pods could have been evicted.
            timing = self.fleet.timing
            evictable = self._failed_at + timing.grace_seconds + timing.toleration_seconds + 5
            settle = time.monotonic() + max(15.0, 3 * timing.grace_seconds)
            while time.monotonic() < settle:
                self._sample()
                if self.settled() and time.monotonic() > evictable and not self._replacing():
                    break
                time.sleep(self.sample_seconds)
        self._sample()
        self._done.set()
        self.result.wall_seconds = self.now()
        watcher.join(timeout=10)
        return self.result

    def _replacing(self) -> bool:
        """A failed node still holds pods, or an evicted pod has not been re-created yet."""
        with self._lock:
            failed = set(self.result.failed_nodes)
            held = any(v.node in failed and v.ended is None for v in self.result.views.values())
            replaced = {v.replaces for v in self.result.views.values() if v.replaces}
        return held or any(key not in replaced for key in self.result.evicted)

    def _fail(self, failure: Failure) -> None:
        self._failed_at = time.monotonic()
        enterprise: Counter[str] = Counter()
        pods: Counter[str] = Counter()
        with self._lock:
            for v in self.result.views.values():
                if v.holds_capacity:
                    pods[v.node] += 1
                    enterprise[v.node] += self._tenant_of_ns[v.namespace].tier == "enterprise"
        chosen = sorted(pods, key=lambda n: (-enterprise[n], -pods[n], n))[: failure.nodes]
        for node in chosen:
            self.fleet.fail_node(node)
            self.result.failed_nodes.append(node)
        self.log(f"{self.now():6.1f} s: node(s) failed (Ready False): {', '.join(chosen) or 'no node'}")

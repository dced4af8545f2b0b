"""The replay: the trace's tasks arrive at their (compressed) creation times in their tenants'
namespaces (as pods; in the policy run a spot tenant's as Kueue Jobs, bench/fleet/jobs.py) and are
deleted at their deletion times, nodes fail on schedule, and watches on the API server keep the
state the promises are checked on.

A pod evicted from a failed node is re-created once, as a workload controller would (a Job's by
the job controller itself), so the report can say whether it found a place again within its
tenant's promises.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes.client.exceptions import ApiException

from bench.fleet import jobs
from bench.fleet.mapping import Arrival, Plan
from bench.fleet.niceness import lower_this_thread
from bench.fleet.promises import (
    EVICTED,
    PodView,
    RunningHoldings,
    Violation,
    gpus_of,
    pod_view,
    pod_violations,
)
from bench.fleet.replay.results import (
    MAX_STALL_SECONDS,
    QUOTA_EXCEEDED,
    Failure,
    RunResult,
    Sample,
    refusal_reason,
)
from bench.fleet.replay.watch import resource_version_of, watch
from bench.fleet.world import LivingFleet
from pdp.substrate.labels import TIER_PRIORITY_CLASS

REPLACE_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds before each further try of a replacement


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
        settle_seconds: float = 0.0,
    ) -> None:
        """`settle_seconds`: the longest the end waits for the last pods to settle (0: the fleet's
        `Timing.settle_seconds`)."""
        self.fleet, self.plan, self.failures, self.log = fleet, plan, failures, log
        span = plan.span
        self.origin = min((a.at for a in plan.arrivals), default=0.0)
        self.compress = max(span / seconds, 1e-9) if span else 1.0
        self.seconds = seconds
        self.sample_seconds = sample_seconds
        self.workers = workers
        self.settle_seconds = settle_seconds
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
        self._holdings = RunningHoldings(self._nodes, self._tenant_of_ns, self._entitlements, self._replicas)
        # Spot tasks as Kueue Jobs (bench/fleet/jobs.py) where the fleet runs Kueue: job -> the
        # view of its latest pod (the view of the Job until it has one), pod -> its view.
        self._queued = fleet.kueue is not None
        self._job_view: dict[str, str] = {}
        self._pod_view: dict[str, str] = {}

    def now(self) -> float:
        return time.monotonic() - self._start

    # -- the watches ----------------------------------------------------------------------------
    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        seen = pod_view(obj)
        key = f"{seen.namespace}/{seen.name}"
        now = self.now()
        evicted = None
        with self._lock:
            key = self._view_key(key, obj, now)
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
            self._check_pod(key, view)
        if evicted:
            self.result.evicted.append(evicted)
            if not view.job:  # a Job's pod the job controller re-creates (`_view_key` sees it)
                self._replace(evicted)

    def _check_pod(self, key: str, view: PodView) -> None:
        """The promises of one pod at each change the watch sees (its binding, a preemption), and
        its tenant's holdings then. Samples every `sample_seconds`, as these were checked until
        12-05, miss a pod that lives between two of them, and most of a compressed trace's pods
        do (the scheduler alone's slice once broke residency 304 times and its samples saw none).
        The entitlement is its tenant's, over all its pods: the holdings judge it."""
        found = pod_violations(
            view, self._nodes, self._tenant_of_ns, self._jurisdictions, TIER_PRIORITY_CLASS["spot"]
        )
        over = self._holdings.apply(key, view)
        for violation in (*found, *((over,) if over else ())):
            self._violated(violation)

    def _violated(self, violation: Violation) -> None:
        self.result.violations.setdefault((violation.check, violation.pod), violation)

    def _view_key(self, key: str, obj: dict[str, Any], now: float) -> str:
        """The key of the view of pod `key`: its own, or for a Job's pod the view of its Job when it
        is the Job's first pod, else a view of its own, which re-places the pod before it when that
        one was evicted from a failed node."""
        if key in self._pod_view:
            return self._pod_view[key]
        job = jobs.job_of_pod(obj)
        latest = self._job_view.get(job, "") if job else ""
        view = self.result.views.get(latest)
        if view is None:
            return key
        if not view.pod:
            view.pod = key
            self._pod_view[key] = latest
            return latest
        # The job controller's replacement of an evicted or preempted pod.
        self.result.views[key] = PodView(
            key.partition("/")[2], view.namespace, priority_class=view.priority_class,
            resources=dict(view.resources), created=now, created_ok=True, job=True, pod=key,
            replaces=latest if view.disruption == EVICTED else "",
        )  # fmt: skip
        self._job_view[job] = self._pod_view[key] = key
        self._arrival_of[key] = self._arrival_of[latest]
        return key

    def _apply_workload(self, kind: str, obj: dict[str, Any]) -> None:
        """Kueue's verdict on a Job: while it finds no quota, the Job waits as a pod the scheduler
        found no node for would (the replay clock does not wait for it)."""
        with self._lock:
            view = self.result.views.get(self._job_view.get(jobs.workload_job(obj), ""))
            if view is None or view.pod:
                return
            why = jobs.workload_waiting(obj) if kind != "DELETED" else ""
            view.unschedulable = bool(why)
            view.unschedulable_why = why or view.unschedulable_why

    # -- submissions ----------------------------------------------------------------------------
    def _create(self, pod: dict[str, Any], arrival: Arrival, replaces: str = "") -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        job = self._queued and jobs.queued(arrival)
        with self._lock:
            self.result.views[key] = PodView(
                meta["name"], meta["namespace"], priority_class=pod["spec"]["priorityClassName"],
                resources={k: int(v) for k, v in pod["spec"]["containers"][0]["resources"]["limits"].items()},
                created=self.now(), replaces=replaces, job=job,
            )  # fmt: skip
            self._arrival_of[key] = arrival
            if job:
                self._job_view[key] = key
        try:
            # A replacement is tried again while the quota still counts the pod it replaces (the
            # quota controller releases it when it sees the eviction), as a workload controller
            # requeues a creation the API server refused.
            for wait in (*REPLACE_BACKOFF, None) if replaces else (None,):
                try:
                    if job:
                        self.fleet.batch.create_namespaced_job(
                            meta["namespace"], jobs.job_object(pod), _request_timeout=30
                        )
                    else:
                        self.fleet.core.create_namespaced_pod(meta["namespace"], pod, _request_timeout=30)
                    break
                except ApiException as exc:
                    if exc.status == 409:  # created already, its answer lost (world._create_nodes)
                        break
                    if wait is None or refusal_reason(exc) != QUOTA_EXCEEDED:
                        raise
                    time.sleep(wait)
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
            return
        with self._lock:
            self.result.answered += 1
            self.result.last_answer = max(self.result.last_answer, self.now())

    def _delete(self, key: str) -> None:
        job = key in self._job_view
        with self._lock:
            view = self.result.views.get(self._job_view.get(key, key))
            if view is None or view.ended is not None:
                return
            if not view.created_ok:  # still being created by another worker: it deletes it after
                view.delete_requested = True
                return
            view.deleted_by_replay = True
            if job and not view.pod:  # still queued: it leaves the queue, no pod ever ran
                view.ended = self.now()
        namespace, name = key.split("/", 1)
        try:
            if job:  # its pod goes with it (the garbage collector's, in the background)
                self.fleet.batch.delete_namespaced_job(
                    name, namespace, propagation_policy="Background", _request_timeout=30
                )
            else:
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
                gpus[tenant.tier] += gpus_of(v, self._replicas)
            elif not v.node and v.ended is None:
                pending[tenant.tier] += 1
        # The promises are checked as the watch sees each change (`_check_pod`), not here.
        self.result.samples.append(Sample(self.now(), dict(gpus), dict(pending), self._virtual))

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
            # Every creation unsettles the cluster at once: this tick's wait is the first of a stall.
            self._unsettled_since = now
            self.result.stalled_seconds += now - last
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
        watches: list[tuple[str, Callable[..., Any], Callable[[str, Any], None]]] = [
            ("pods", self.fleet.core.list_pod_for_all_namespaces, self._apply)
        ]
        if self._queued:
            watches.append(("workloads", self.fleet.list_workloads, self._apply_workload))
        watchers = [
            threading.Thread(
                target=watch,
                args=(fn, apply, resource_version_of(fn(limit=1)), self._done, self.log),
                name=f"replay-watch-{name}",
                daemon=True,
            )
            for name, fn, apply in watches
        ]
        self._start = time.monotonic()
        for watcher in watchers:
            watcher.start()
        next_sample = 0.0
        last = time.monotonic()
        with ThreadPoolExecutor(
            self.workers, thread_name_prefix="replay-submit", initializer=lower_this_thread
        ) as pool:
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
            if self.fleet.hold_scheduler:
                self._start_scheduler_once_answered()
            # The last pods placed, the evictions and their re-placements settle, and no sooner
            # than a failed node's pods could have been evicted (it reports Ready False: noticed at
            # the node lifecycle controller's next pass, evicted once the toleration ends).
            timing = self.fleet.timing
            evictable = self._failed_at + timing.monitor_seconds + timing.toleration_seconds + 5
            settle = time.monotonic() + (self.settle_seconds or timing.settle_seconds)
            while time.monotonic() < settle:
                self._sample()
                if self.settled() and time.monotonic() > evictable and not self._replacing():
                    break
                time.sleep(self.sample_seconds)
        self._sample()
        self._done.set()
        self.result.wall_seconds = self.now()
        for watcher in watchers:
            watcher.join(timeout=10)
        return self.result

    def _start_scheduler_once_answered(self) -> None:
        """The saturation run's second phase: every creation answered, the scheduler meets them."""
        while True:
            with self._lock:
                if not self._inflight:
                    break
            self._sample()
            time.sleep(0.05)
        self.result.scheduler_started = self.now()
        self.log(f"every creation answered; kube-scheduler started at {self.result.scheduler_started:.1f} s")
        self.fleet.start_scheduler()

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

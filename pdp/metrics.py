"""The PDP's Prometheus metrics, all defined here, and what records them.

Conventions (Gatekeeper's, docs/metrics.md): every name has the component prefix
`gpupaas_pdp_` and a unit suffix (`_total`, `_seconds`); label values come only from closed sets
(outcome, intent kind, entry point, a reason code of the policy's catalogue, an engine error kind),
never a tenant, namespace, object name or decision id: those go to the decision log. Metrics carry
no access control, and per-object labels are how Kyverno and Gatekeeper users got 10^5-10^6 series.
The one exception, `TenantCollector` at the end (entitlements and queue per tenant, for the
console's charts), is in a registry of its own that only an admin token is served.

Decisions are recorded in one place, `DecisionPoint` (pdp/point.py), whatever the entry point; the
webhook and the extender add their request counts and latencies in their handlers; the lifecycle's
workflow and approval gauges are read from its database when scraped (`LifecycleCollector`).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from pdp.intents import KINDS

PREFIX = "gpupaas_pdp_"
# 0.1 ms to 10 s: a wasm decision takes well under a millisecond, an OPA one 1-20 ms, a placement
# over thousands of nodes or a loaded machine up to seconds, a timeout up to the caller's deadline.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
ENTRY_POINTS = frozenset(
    {"grpc", "grpc_batch", "http", "webhook", "extender", "lifecycle", "cli", "embedded"}
)
OTHER = "other"
_KINDS = frozenset(KINDS)
# Reason codes the PDP itself answers with (pdp/engine/base.py, pdp/decision.py); the policy's own
# are read from the METADATA of the Rego sources (custom.code).
ENGINE_CODES = frozenset({"ENGINE_ERROR", "ENGINE_UNAVAILABLE", "ENGINE_TIMEOUT", "ENGINE_NO_ACTIVE_BUNDLE"})
# Above this many catalogue codes something is wrong with the sources: the rest count as "other".
MAX_CATALOGUE = 512
_CODE_LINE = re.compile(r"^#\s+code:\s*([A-Z][A-Z0-9_]{0,63})\s*$", re.MULTILINE)

DECISIONS = Counter(
    PREFIX + "decisions_total",
    "Decisions answered, by entry point, intent kind and outcome.",
    ("entry_point", "kind", "outcome"),
)
DECISION_REASONS = Counter(
    PREFIX + "decision_reasons_total",
    "Reasons given in decisions, by entry point, outcome and reason code (other: not in the catalogue).",
    ("entry_point", "outcome", "reason"),
)
DECISION_DURATION = Histogram(
    PREFIX + "decision_duration_seconds",
    "Time from the decision point receiving intents to the decision being rendered.",
    ("entry_point", "outcome"),
    buckets=LATENCY_BUCKETS,
)
ENGINE_ERRORS = Counter(
    PREFIX + "engine_errors_total",
    "Evaluations the engine could not answer (each answered DENY), by error kind.",
    ("entry_point", "kind"),
)
SHADOW_EVALUATIONS = Counter(
    PREFIX + "shadow_evaluations_total",
    "Live decisions the shadow candidate (pdp serve --shadow-bundle) decided again, by whether it "
    "agreed (outcome, reason codes and constraints equal) or disagreed.",
    ("result",),
)
SHADOW_DISAGREEMENTS = Counter(
    PREFIX + "shadow_disagreements_total",
    "Shadow disagreements by kind of change (allow-to-deny, deny-to-allow, outcome, reasons, "
    "constraints); one decision may count under several.",
    ("change",),
)
SHADOW_DROPPED = Counter(
    PREFIX + "shadow_dropped_total",
    "Live decisions not shadowed because the shadow queue was full (the answer never waits for it).",
)
# With several processes (pdp/net/metrics_processes.py) a gauge is the largest of the processes
# alive: during a bundle change every revision some process still decides on is 1.
BUNDLE_INFO = Gauge(
    PREFIX + "bundle_info",
    "1 for the bundle revision the latest decision was made on.",
    ("revision",),
    multiprocess_mode="livemax",
)
BUNDLE_ACTIVATED = Gauge(
    PREFIX + "bundle_activation_timestamp_seconds",
    "When this process first decided on the current bundle revision (Unix time).",
    multiprocess_mode="livemax",
)


class BundleAge(Collector):
    """`bundle_age_seconds`, computed when scraped (0 before the first decision)."""

    name = PREFIX + "bundle_age_seconds"
    help = "Seconds since this process first decided on the current bundle revision."

    def __init__(self) -> None:
        self.activated: float | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        age = 0.0 if self.activated is None else time.time() - self.activated
        yield GaugeMetricFamily(self.name, self.help, value=age)

    def describe(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.help)


BUNDLE_AGE = BundleAge()
REGISTRY.register(BUNDLE_AGE)
BUNDLE_FAILURES = Counter(
    PREFIX + "bundle_activation_failures_total",
    "Bundles the engine refused (signature, digest, compile error) or failed to load.",
)
WEBHOOK_REQUESTS = Counter(
    PREFIX + "webhook_requests_total",
    "AdmissionReviews answered, by outcome (allow, deny, error: not an AdmissionReview).",
    ("outcome",),
)
WEBHOOK_DURATION = Histogram(
    PREFIX + "webhook_request_duration_seconds",
    "Time to answer an AdmissionReview, by outcome.",
    ("outcome",),
    buckets=LATENCY_BUCKETS,
)
EXTENDER_REQUESTS = Counter(
    PREFIX + "extender_requests_total",
    "Scheduler extender calls, by verb and outcome (filtered: some node refused, "
    "all_eligible, error: malformed arguments).",
    ("verb", "outcome"),
)
EXTENDER_DURATION = Histogram(
    PREFIX + "extender_request_duration_seconds",
    "Time to answer a scheduler extender call, by verb and outcome.",
    ("verb", "outcome"),
    buckets=LATENCY_BUCKETS,
)


def policy_codes(policies: Path) -> frozenset[str]:
    """The reason codes the Rego sources under `policies` declare in METADATA (custom.code)."""
    codes: set[str] = set()
    for path in sorted(policies.rglob("*.rego")):
        if not path.name.endswith("_test.rego"):
            codes.update(_CODE_LINE.findall(path.read_text(encoding="utf-8")))
    return frozenset(sorted(codes)[:MAX_CATALOGUE])


class DecisionMetrics:
    """Records decisions; one per process (`decisions`), used by every DecisionPoint.

    Labelled children are cached by their label values: `labels()` costs a lock and a dict lookup
    per call, and a decision touches three metrics."""

    def __init__(self, catalogue: frozenset[str] | None = None) -> None:
        self._catalogue = catalogue
        self._revision: str | None = None
        self._children: dict[tuple[str, ...], Any] = {}
        self._revision_lock = threading.Lock()

    @property
    def catalogue(self) -> frozenset[str]:
        if self._catalogue is None:
            # The checkout's policies/, or the installed package's copy (pdp/opa/binary.py's
            # PROJECT_ROOT, not imported: OPA's status records metrics here, so metrics import
            # nothing of OPA).
            here = Path(__file__).resolve().parent
            folder = next(
                (f for f in (here.parent / "policies", here / "_data" / "policies") if f.is_dir()),
                here.parent / "policies",
            )
            self._catalogue = (policy_codes(folder) if folder.is_dir() else frozenset()) | ENGINE_CODES
        return self._catalogue

    def reason_label(self, code: str) -> str:
        return code if code in self.catalogue else OTHER

    def _child(self, metric: Any, *values: str) -> Any:
        key = (metric._name, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def decided(
        self,
        entry_point: str,
        kind: str,
        outcome: str,
        reason_codes: Iterable[str],
        seconds: float,
        revision: str,
    ) -> None:
        entry = entry_point if entry_point in ENTRY_POINTS else OTHER
        self._child(DECISIONS, entry, _kind_label(kind), outcome).inc()
        self._child(DECISION_DURATION, entry, outcome).observe(seconds)
        for code in reason_codes:
            self._child(DECISION_REASONS, entry, outcome, self.reason_label(code)).inc()
        if revision and revision != self._revision:
            self.revision_seen(revision)

    def engine_error(self, entry_point: str, code: str) -> None:
        entry = entry_point if entry_point in ENTRY_POINTS else OTHER
        kind = code.removeprefix("ENGINE_").lower() if code in ENGINE_CODES else OTHER
        self._child(ENGINE_ERRORS, entry, kind).inc()

    def revision_seen(self, revision: str) -> None:
        """A decision was made on `revision`: the info gauge carries only the current one."""
        with self._revision_lock:
            if revision == self._revision:
                return
            if self._revision is not None:
                # Shared between processes, a value is never removed, only set: 0 for the old one.
                BUNDLE_INFO.labels(self._revision).set(0)
            BUNDLE_INFO.clear()
            BUNDLE_INFO.labels(revision).set(1)
            activated = time.time()
            BUNDLE_ACTIVATED.set(activated)
            BUNDLE_AGE.activated = activated
            self._revision = revision


def _kind_label(kind: str) -> str:
    return kind if kind in _KINDS else OTHER


decisions = DecisionMetrics()


def bundle_refused() -> None:
    BUNDLE_FAILURES.inc()


def timed_since(started: float) -> float:
    return max(time.monotonic() - started, 0.0)


# outcome -> its (requests, duration) children: `labels()` takes a lock and builds a key each call.
_webhook_children: dict[str, tuple[Any, Any]] = {}


def webhook_answered(outcome: str, started: float) -> None:
    children = _webhook_children.get(outcome)
    if children is None:
        children = (WEBHOOK_REQUESTS.labels(outcome), WEBHOOK_DURATION.labels(outcome))
        _webhook_children[outcome] = children
    children[0].inc()
    children[1].observe(timed_since(started))


def extender_answered(verb: str, outcome: str, started: float) -> None:
    EXTENDER_REQUESTS.labels(verb, outcome).inc()
    EXTENDER_DURATION.labels(verb, outcome).observe(timed_since(started))


# --- lifecycle: read from its database at scrape time -------------------------------------------

WorkflowCounts = Callable[[], dict[tuple[str, str], int]]
PendingApprovals = Callable[[], list[float]]


class LifecycleCollector(Collector):
    """Workflows by kind and state, pending approvals and the age of the oldest one, read when
    Prometheus scrapes (a gauge set on events would drift from the database after a restart)."""

    def __init__(self, workflows: WorkflowCounts, pending_ages: PendingApprovals) -> None:
        self._workflows = workflows
        self._pending_ages = pending_ages

    def collect(self) -> Iterable[GaugeMetricFamily]:
        flows = GaugeMetricFamily(
            PREFIX + "lifecycle_workflows",
            "Lifecycle workflows in the database, by kind (workflow name) and state (DBOS status).",
            labels=("kind", "state"),
        )
        for (kind, state), count in sorted(self._workflows().items()):
            flows.add_metric((kind, state), count)
        yield flows
        ages = self._pending_ages()
        yield GaugeMetricFamily(
            PREFIX + "lifecycle_pending_approvals",
            "Approvals waiting for an answer (pending or escalated).",
            value=len(ages),
        )
        yield GaugeMetricFamily(
            PREFIX + "lifecycle_oldest_pending_approval_age_seconds",
            "Age of the oldest approval waiting for an answer; 0 when none waits.",
            value=max(ages, default=0.0),
        )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # collected lazily: describing must not touch the database


def register_lifecycle(collector: LifecycleCollector, registry: CollectorRegistry = REGISTRY) -> None:
    """Register `collector` once; another one registered before it (tests) is replaced."""
    global _lifecycle
    with _register_lock:
        if _lifecycle is collector:
            return
        if _lifecycle is not None:
            registry.unregister(_lifecycle)
        registry.register(collector)
        _lifecycle = collector


_lifecycle: LifecycleCollector | None = None
_register_lock = threading.Lock()


class DriftCollector(Collector):
    """The last cluster drift audit (pdp audit-cluster): registered by the first audit, so only a
    process that audits exports these gauges."""

    def __init__(self) -> None:
        self.findings: dict[str, int] = {}
        self.audited = 0
        self.finished = 0.0
        # clusters the last audit could not read (the lifecycle worker audits several); None: one
        # cluster, whose failure is no audit at all
        self.unreachable: int | None = None

    def collect(self) -> Iterable[GaugeMetricFamily]:
        found = GaugeMetricFamily(
            PREFIX + "drift_findings",
            "Running GPU pods the current revision would refuse or place elsewhere at the last cluster "
            "audit, by finding (refused, misplaced).",
            labels=("finding",),
        )
        for finding, count in sorted(self.findings.items()):
            found.add_metric((finding,), count)
        yield found
        yield GaugeMetricFamily(
            PREFIX + "drift_audited_pods",
            "Running GPU pods the last cluster audit decided.",
            value=self.audited,
        )
        yield GaugeMetricFamily(
            PREFIX + "drift_audit_timestamp_seconds",
            "When the last cluster audit finished (Unix time).",
            value=self.finished,
        )
        if self.unreachable is not None:
            yield GaugeMetricFamily(
                PREFIX + "drift_unreachable_clusters",
                "Clusters the last drift audit could not read (their pods are not in the findings).",
                value=self.unreachable,
            )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


_drift: DriftCollector | None = None


def drift_audited(findings: dict[str, int], audited: int, unreachable: int | None = None) -> None:
    """Export the result of a cluster drift audit (registering the gauges on first use)."""
    global _drift
    with _register_lock:
        if _drift is None:
            _drift = DriftCollector()
            REGISTRY.register(_drift)
        _drift.findings, _drift.audited, _drift.finished = dict(findings), audited, time.time()
        _drift.unreachable = unreachable


# --- tenants: the one exception to "no tenant label", served behind an admin token ---------------

TenantFigures = Callable[[], dict[tuple[str, str], tuple[int, int]]]


class TenantCollector(Collector):
    """Per active tenant and GPU class: the GPUs its policy entitles it to and its deployments
    waiting for capacity, read from the lifecycle database when scraped (so a policy change is a
    step in the series, and a restart loses nothing).

    Tenant-labelled, unlike every other metric here: the console's entitlement-against-usage and
    queue charts need a history per tenant, which only a series gives. So these are never in the
    process registry the unauthenticated `/metrics` serves, but in their own (`tenant_registry`),
    which the product API serves at `/metrics/tenants` to an admin token only. One series per
    tenant and entitled class: the cardinality of kube-state-metrics' per-namespace quota series."""

    def __init__(self, figures: TenantFigures) -> None:
        self._figures = figures  # (tenant, gpu class) -> (GPUs entitled, deployments queued)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        labels = ("tenant", "gpu_class")
        entitled = GaugeMetricFamily(
            PREFIX + "tenant_entitled_gpus",
            "GPUs an active tenant's policy entitles it to, per GPU class.",
            labels=labels,
        )
        queued = GaugeMetricFamily(
            PREFIX + "tenant_queued_deployments",
            "An active tenant's deployments waiting for capacity (lifecycle queue), per GPU class.",
            labels=labels,
        )
        for key, (gpus, waiting) in sorted(self._figures().items()):
            entitled.add_metric(key, gpus)
            queued.add_metric(key, waiting)
        yield entitled
        yield queued

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # collected lazily: describing must not touch the database


def tenant_registry(figures: TenantFigures) -> CollectorRegistry:
    """A registry of its own for the tenant-labelled gauges (never the process's REGISTRY)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TenantCollector(figures))
    return registry

"""Measured SLAs: per tenant and deployment, p99 latency and availability read from the model
servers' metrics in Prometheus, against the tenant's SLA (`sla.latency_p99_ms`, `sla.availability`).

The metrics are vLLM's: `vllm:e2e_request_latency_seconds` (histogram) and
`vllm:request_success_total` by `finished_reason` (a request that finished with `error` counts
against availability). Series carry the `namespace` and `pod` Prometheus's Kubernetes discovery
attaches; the deployment is the pod name without the ReplicaSet and pod suffixes (computed in
PromQL with label_replace, the same rule as pdp/telemetry/waste.py's deployment_of), so the
replicas of one deployment are aggregated before a quantile is taken.

Error budgets follow the Google SRE workbook (chapter "Alerting on SLOs"): an objective of p99 under
L ms allows 1% of requests slower than L; an availability of A% allows (100 - A)% failed. The burn
rate over a window is the bad fraction over that window divided by the allowed one. Two alerts,
each firing only when both its long and its short window burn faster than its threshold
(multi-window, multi-burn-rate): fast (1h and 5m over 14.4x: 2% of a 30-day budget in an hour) and
slow (6h and 30m over 6x: 5% in six hours). Windows and thresholds are configurable (tests use
seconds). The fraction of requests slower than L is read from the histogram's buckets, linearly
interpolated inside the bucket that holds L, the assumption histogram_quantile makes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pdp.config.index import namespace_index
from pdp.telemetry.prometheus import PrometheusClient, Sample, finite
from pdp.telemetry.waste import _SAFE, duration_seconds

LATENCY = "vllm:e2e_request_latency_seconds"
FINISHED = "vllm:request_success_total"
ERROR_REASONS = ("error",)
# A p99 objective leaves 1% of requests to be slower than it.
LATENCY_BUDGET = 0.01
# A burn rate shown when the budget is zero (an availability of 100%) and something failed.
UNBOUNDED_BURN = 1e6


@dataclass(frozen=True)
class Windows:
    """The two alerts' windows and burn-rate thresholds, and the SLO period the budget covers."""

    fast_long: str = "1h"
    fast_short: str = "5m"
    fast_burn: float = 14.4
    slow_long: str = "6h"
    slow_short: str = "30m"
    slow_burn: float = 6.0
    period: str = "30d"

    def __post_init__(self) -> None:
        for name in ("fast_long", "fast_short", "slow_long", "slow_short", "period"):
            duration_seconds(getattr(self, name), f"--{name.replace('_', '-')}")
        for long, short in (("fast_long", "fast_short"), ("slow_long", "slow_short")):
            if duration_seconds(getattr(self, short)) >= duration_seconds(getattr(self, long)):
                raise ValueError(
                    f"--{short.replace('_', '-')} {getattr(self, short)} must be shorter than "
                    f"--{long.replace('_', '-')} {getattr(self, long)}"
                )
        for name in ("fast_burn", "slow_burn"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"--{name.replace('_', '-')} {value!r}: expected a burn rate above 0")

    def all(self) -> list[str]:
        ordered = [self.fast_long, self.fast_short, self.slow_long, self.slow_short, self.period]
        return list(dict.fromkeys(ordered))

    def alerts(self) -> list[tuple[str, str, str, float]]:
        """(severity, long window, short window, threshold)."""
        return [
            ("fast", self.fast_long, self.fast_short, self.fast_burn),
            ("slow", self.slow_long, self.slow_short, self.slow_burn),
        ]


_FLEET_FIELDS = {
    f"--{alert}-{part}": f"fleet.sla_alerting.{alert}.{'burn_rate' if part == 'burn' else part}"
    for alert in ("fast", "slow")
    for part in ("long", "short", "burn")
} | {"--period": "fleet.sla_alerting.period"}


def fleet_windows(fleet: Mapping[str, Any]) -> Windows:
    """The windows of the fleet's `sla_alerting` (the SRE workbook's defaults for what it leaves
    out), which the lifecycle's checks and the rule file both use; ValueError naming the field."""
    conf = fleet.get("sla_alerting") or {}
    fast, slow, default = conf.get("fast") or {}, conf.get("slow") or {}, Windows()
    try:
        return Windows(
            fast.get("long", default.fast_long),
            fast.get("short", default.fast_short),
            fast.get("burn_rate", default.fast_burn),  # Windows refuses a non-number, naming it
            slow.get("long", default.slow_long),
            slow.get("short", default.slow_short),
            slow.get("burn_rate", default.slow_burn),
            conf.get("period", default.period),
        )
    except ValueError as exc:
        # Windows names pdp sla's options; here they are fields of the fleet document.
        message = str(exc)
        for option, name in _FLEET_FIELDS.items():
            message = message.replace(option, name)
        raise ValueError(message) from exc


def with_deployment(expr: str) -> str:
    """`expr` with a `deployment` label: the pod's name without a Deployment's pod suffixes (the
    pod's own name when it has none)."""
    named = f'label_replace({expr}, "deployment", "$1", "pod", "(.*)")'
    return f'label_replace({named}, "deployment", "$1", "pod", "(.+)-{_SAFE}{{6,10}}-{_SAFE}{{5}}")'


# The series of every namespace; the rule file (pdp/telemetry/sla_rules.py) narrows it to a tenant's.
ANY_NAMESPACE = 'namespace!=""'


def buckets_expression(window: str, namespaces: str = ANY_NAMESPACE) -> str:
    rate = f"rate({LATENCY}_bucket{{{namespaces}}}[{window}])"
    return f"sum by (le, namespace, deployment) ({with_deployment(rate)})"


def p99_expression(window: str) -> str:
    return f"histogram_quantile(0.99, {buckets_expression(window)})"


def finished_expression(window: str, errors_only: bool = False, namespaces: str = ANY_NAMESPACE) -> str:
    reasons = "|".join(ERROR_REASONS)
    match = f'{namespaces}, finished_reason=~"{reasons}"' if errors_only else namespaces
    return f"sum by (namespace, deployment) ({with_deployment(f'rate({FINISHED}{{{match}}}[{window}])')})"


def slower_fraction(buckets: list[tuple[float, float]], threshold_seconds: float) -> float | None:
    """The fraction of requests slower than the threshold, from cumulative (upper bound, rate)
    buckets; None without requests. Linear inside the bucket that holds the threshold; a threshold
    past the last finite bound counts the requests of the +Inf bucket as slower."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    below, below_count = 0.0, 0.0
    for bound, count in ordered:
        if threshold_seconds < bound:
            if math.isinf(bound):
                return max(0.0, 1 - below_count / total)
            inside = (threshold_seconds - below) / (bound - below)
            good = below_count + (count - below_count) * inside
            return max(0.0, 1 - good / total)
        below, below_count = bound, count
    return max(0.0, 1 - below_count / total)


def burn(bad_fraction: float | None, budget: float) -> float | None:
    if bad_fraction is None:
        return None
    if budget <= 0:
        return 0.0 if bad_fraction <= 0 else UNBOUNDED_BURN
    return bad_fraction / budget


@dataclass(frozen=True)
class Objective:
    latency_p99_ms: float | None = None
    availability: float | None = None  # percent

    @classmethod
    def of(cls, policy: dict[str, Any]) -> Objective:
        sla = policy.get("sla") or {}
        latency, availability = sla.get("latency_p99_ms"), sla.get("availability")
        return cls(
            float(latency) if latency is not None else None,
            float(availability) if availability is not None else None,
        )

    def budget(self, kind: str) -> float | None:
        if kind == "latency":
            return LATENCY_BUDGET if self.latency_p99_ms is not None else None
        return (100 - self.availability) / 100 if self.availability is not None else None


@dataclass
class DeploymentSla:
    tenant: str
    namespace: str
    deployment: str
    tier: str
    objective: Objective
    requests_per_second: float = 0.0
    p99_ms: float | None = None
    availability: float | None = None  # percent, over the fast alert's long window
    # objective -> window -> burn rate (None: no request in that window)
    burn: dict[str, dict[str, float | None]] = field(default_factory=dict)
    budget_left: dict[str, float | None] = field(default_factory=dict)  # fraction of the period's budget
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def breached(self) -> bool:
        return bool(self.alerts)

    def as_json(self) -> dict[str, Any]:
        def r(v: float | None, digits: int = 4) -> float | None:
            return None if v is None else round(v, digits)

        return {
            "tenant": self.tenant,
            "namespace": self.namespace,
            "deployment": self.deployment,
            "tier": self.tier,
            "objective": {
                "latency_p99_ms": self.objective.latency_p99_ms,
                "availability": self.objective.availability,
            },
            "requests_per_second": r(self.requests_per_second, 3),
            "p99_ms": r(self.p99_ms, 1),
            "availability": r(self.availability, 4),
            "burn_rates": {k: {w: r(v, 3) for w, v in by.items()} for k, by in self.burn.items()},
            "budget_left": {k: r(v, 4) for k, v in self.budget_left.items()},
            "alerts": self.alerts,
            "breached": self.breached,
        }


@dataclass
class SlaReport:
    windows: Windows
    rows: list[DeploymentSla] = field(default_factory=list)

    def breaches(self) -> list[DeploymentSla]:
        return [row for row in self.rows if row.breached]

    def as_json(self) -> dict[str, Any]:
        w = self.windows
        return {
            "windows": {
                "fast": {"long": w.fast_long, "short": w.fast_short, "burn_rate": w.fast_burn},
                "slow": {"long": w.slow_long, "short": w.slow_short, "burn_rate": w.slow_burn},
                "period": w.period,
            },
            "deployments": [row.as_json() for row in self.rows],
        }


def _by_key(samples: list[Sample]) -> dict[tuple[str, str], float]:
    return {(s.labels.get("namespace", ""), s.labels.get("deployment", "")): s.value for s in finite(samples)}


class _Measures:
    """Every series the report needs, one query per measure and window."""

    def __init__(self, prometheus: PrometheusClient, windows: Windows) -> None:
        self.buckets: dict[str, dict[tuple[str, str], list[tuple[float, float]]]] = {}
        self.total: dict[str, dict[tuple[str, str], float]] = {}
        self.errors: dict[str, dict[tuple[str, str], float]] = {}
        for window in windows.all():
            grouped: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
            for s in finite(prometheus.query(buckets_expression(window))):
                key = (s.labels.get("namespace", ""), s.labels.get("deployment", ""))
                grouped[key].append((float(s.labels.get("le", "+Inf")), s.value))
            self.buckets[window] = dict(grouped)
            self.total[window] = _by_key(prometheus.query(finished_expression(window)))
            self.errors[window] = _by_key(prometheus.query(finished_expression(window, errors_only=True)))
        self.p99 = _by_key(prometheus.query(p99_expression(windows.fast_short)))

    def keys(self) -> set[tuple[str, str]]:
        seen = {k for by in self.buckets.values() for k in by}
        return seen | {k for by in self.total.values() for k in by}

    def bad(self, kind: str, key: tuple[str, str], window: str, objective: Objective) -> float | None:
        if kind == "latency":
            assert objective.latency_p99_ms is not None
            return slower_fraction(self.buckets[window].get(key, []), objective.latency_p99_ms / 1000)
        total = self.total[window].get(key, 0.0)
        return self.errors[window].get(key, 0.0) / total if total > 0 else None


def sla_report(prometheus: PrometheusClient, tenants: dict[str, Any], windows: Windows) -> SlaReport:
    """Every deployment serving requests, measured against its tenant's SLA. `tenants`: name ->
    tenant policy (its `namespaces`, `tier`, `sla`)."""
    owners = namespace_index(tenants)
    m = _Measures(prometheus, windows)
    rows = []
    for namespace, deployment in sorted(m.keys()):
        tenant = owners.get(namespace)
        policy = tenants.get(tenant, {}) if tenant else {}
        objective = Objective.of(policy)
        row = DeploymentSla(
            tenant=tenant or f"(no tenant: namespace {namespace})",
            namespace=namespace,
            deployment=deployment,
            tier=str(policy.get("tier", "")),
            objective=objective,
        )
        key = (namespace, deployment)
        row.requests_per_second = m.total[windows.fast_short].get(key, 0.0)
        if key in m.p99:
            row.p99_ms = m.p99[key] * 1000
        errors = m.bad("availability", key, windows.fast_long, objective)
        row.availability = None if errors is None else 100 * (1 - errors)
        for kind in ("latency", "availability"):
            budget = objective.budget(kind)
            if budget is None:
                continue
            rates = {w: burn(m.bad(kind, key, w, objective), budget) for w in windows.all()}
            row.burn[kind] = {w: rates[w] for w in windows.all() if w != windows.period}
            spent = rates[windows.period]
            row.budget_left[kind] = None if spent is None else 1 - spent
            for severity, long, short, threshold in windows.alerts():
                at_long, at_short = rates[long], rates[short]
                if at_long is not None and at_short is not None and min(at_long, at_short) > threshold:
                    row.alerts.append({
                        "objective": kind,
                        "severity": severity,
                        "burn_rate_long": round(at_long, 3),
                        "burn_rate_short": round(at_short, 3),
                        "threshold": threshold,
                        "windows": [long, short],
                    })  # fmt: skip
        rows.append(row)
    return SlaReport(windows, rows)

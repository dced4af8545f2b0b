"""The lifecycle's workflows and approvals, read from its database when Prometheus scrapes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from pdp.metrics.conventions import PREFIX

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

"""The last cluster drift audit (pdp audit-cluster), exported by the process that ran it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pdp.metrics.conventions import PREFIX


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
_register_lock = threading.Lock()


def drift_audited(findings: dict[str, int], audited: int, unreachable: int | None = None) -> None:
    """Export the result of a cluster drift audit (registering the gauges on first use)."""
    global _drift
    with _register_lock:
        if _drift is None:
            _drift = DriftCollector()
            REGISTRY.register(_drift)
        _drift.findings, _drift.audited, _drift.finished = dict(findings), audited, time.time()
        _drift.unreachable = unreachable

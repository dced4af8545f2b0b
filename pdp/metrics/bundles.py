"""The bundle a process decides on: which revision, since when, and the bundles refused."""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pdp.metrics.conventions import PREFIX

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


def bundle_refused() -> None:
    BUNDLE_FAILURES.inc()

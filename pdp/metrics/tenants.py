"""Tenants: the one exception to "no tenant label", in a registry of its own served behind a
metrics token (or the admin's)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from pdp.metrics.conventions import PREFIX

TenantFigures = Callable[[], dict[tuple[str, str], tuple[int, int]]]


class TenantCollector(Collector):
    """Per active tenant and GPU class: the GPUs its policy entitles it to and its deployments
    waiting for capacity, read from the lifecycle database when scraped (so a policy change is a
    step in the series, and a restart loses nothing).

    Tenant-labelled, unlike every other metric here: the console's entitlement-against-usage and
    queue charts need a history per tenant, which only a series gives. So these are never in the
    process registry the unauthenticated `/metrics` serves, but in their own (`tenant_registry`),
    which the product API serves at `/metrics/tenants` to a metrics or the admin token only. One series per
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

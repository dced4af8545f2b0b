"""Whether one deployment's GPUs stayed idle over a span of time, read from DCGM metrics in
Prometheus: the re-check the reclaim workflow makes when its grace has passed.

Stricter than the waste report's average: a GPU counts as idle only if its utilization and its
framebuffer use stayed below the thresholds at every sample of the span (`max_over_time`), so a
GPU put back to work at any moment of the grace is busy. GPUs are those dcgm-exporter maps to a
pod of the deployment (its namespaces, and the pod name without the ReplicaSet and pod suffixes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pdp.schemas.names import is_dns_label
from pdp.telemetry.prometheus import PrometheusClient, Sample, finite
from pdp.telemetry.waste import deployment_of


@dataclass
class Idleness:
    """The deployment's GPUs seen over the span: idle throughout, or put to work at some point."""

    idle: int = 0
    busy: int = 0
    gpus: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"idle_gpus": self.idle, "busy_gpus": self.busy, "gpus": self.gpus}


def _key(sample: Sample) -> tuple[str, str]:
    return sample.labels.get("Hostname", "?"), sample.labels.get("UUID") or sample.labels.get("gpu", "?")


def deployment_idleness(
    prometheus: PrometheusClient,
    namespaces: list[str],
    deployment: str,
    seconds: float,
    *,
    max_utilization: float = 5.0,
    max_memory_mib: float = 1024.0,
) -> Idleness:
    """The GPUs of `deployment` (pods in `namespaces`) idle at every sample of the last `seconds`."""
    bad = [n for n in namespaces if not is_dns_label(n)]
    if bad or not namespaces:
        raise ValueError(f"namespaces {namespaces!r}: expected Kubernetes namespace names")
    selector = f'namespace=~"{"|".join(namespaces)}"'
    span = f"{max(1, round(seconds))}s"
    peak_util = {
        _key(s): s
        for s in finite(prometheus.query(f"max_over_time(DCGM_FI_DEV_GPU_UTIL{{{selector}}}[{span}])"))
        if deployment_of(s.labels.get("pod", "")) == deployment
    }
    peak_memory = {
        _key(s): s.value
        for s in finite(prometheus.query(f"max_over_time(DCGM_FI_DEV_FB_USED{{{selector}}}[{span}])"))
        if deployment_of(s.labels.get("pod", "")) == deployment
    }
    out = Idleness()
    for key, sample in sorted(peak_util.items()):
        memory = peak_memory.get(key)
        idle = sample.value < max_utilization and memory is not None and memory < max_memory_mib
        out.idle += idle
        out.busy += not idle
        out.gpus.append(
            {"node": key[0], "uuid": key[1], "pod": sample.labels.get("pod", ""),
             "max_utilization": sample.value, "max_memory_mib": memory, "idle": idle}
        )  # fmt: skip
    return out

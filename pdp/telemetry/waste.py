"""Waste detection: GPUs a pod holds that do no work, read from DCGM metrics in Prometheus.

A GPU is idle over a window when its average utilization (`DCGM_FI_DEV_GPU_UTIL`) is below
`max_utilization` percent and its average framebuffer use (`DCGM_FI_DEV_FB_USED`) below
`max_memory_mib`: a loaded model that serves nothing keeps its memory and is not counted, a pod
that holds GPUs and loaded nothing is. Only GPUs dcgm-exporter maps to a pod (a `namespace` label)
count: a free GPU wastes nothing a tenant is charged for.

GPU-hours wasted are measured, not extrapolated: a subquery samples "idle at this instant" every
`step` over the window, and each idle sample counts `step` of that GPU's time.

Each GPU is attributed to its tenant (the tenant documents' `namespaces`), its deployment (the pod
name without the ReplicaSet and pod suffixes Kubernetes adds) and its pool (the fleet's
`node_names`); a namespace or node the documents do not know is reported as such, never dropped.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from pdp.config.index import fleet_index, namespace_index
from pdp.telemetry.prometheus import PrometheusClient, Sample, finite

_DURATION = re.compile(r"^([0-9]+)(ms|s|m|h|d)$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# <deployment>-<pod-template-hash>-<5 characters>: the name a Deployment's ReplicaSet gives a pod.
# The suffixes use Kubernetes' SafeEncodeString alphabet (no vowels, no 0, 1 or 3).
_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"
_DEPLOYMENT_POD = re.compile(rf"^(?P<deployment>.+)-{_SAFE}{{6,10}}-{_SAFE}{{5}}$")


def duration_seconds(text: str, option: str = "--window") -> float:
    """A Prometheus duration with one unit (`30s`, `15m`, `6h`) in seconds; ValueError naming `option`."""
    match = _DURATION.fullmatch(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{option} {text!r}: expected a positive duration such as 30s, 15m or 6h")
    return int(match.group(1)) * _SECONDS[match.group(2)]


@dataclass(frozen=True)
class Thresholds:
    window: str = "1h"
    step: str = "1m"
    max_utilization: float = 5.0
    max_memory_mib: float = 1024.0

    def __post_init__(self) -> None:
        window, step = duration_seconds(self.window), duration_seconds(self.step, "--step")
        if step > window:
            raise ValueError(f"--step {self.step} is longer than --window {self.window}")
        if not 0 <= self.max_utilization <= 100:
            raise ValueError(f"--max-utilization {self.max_utilization}: expected a percentage from 0 to 100")
        if self.max_memory_mib < 0:
            raise ValueError(f"--max-memory-mib {self.max_memory_mib}: expected a number of MiB >= 0")


def idle_expression(t: Thresholds) -> str:
    """PromQL: the allocated GPUs idle on average over the window (value: average utilization)."""
    return (
        f'avg_over_time(DCGM_FI_DEV_GPU_UTIL{{namespace!=""}}[{t.window}]) < {t.max_utilization:g}'
        f' and avg_over_time(DCGM_FI_DEV_FB_USED{{namespace!=""}}[{t.window}]) < {t.max_memory_mib:g}'
    )


def wasted_hours_expression(t: Thresholds) -> str:
    """PromQL: per allocated GPU, the hours within the window it was idle, sampled every step."""
    idle_now = (
        f'(DCGM_FI_DEV_GPU_UTIL{{namespace!=""}} < bool {t.max_utilization:g})'
        f' * (DCGM_FI_DEV_FB_USED{{namespace!=""}} < bool {t.max_memory_mib:g})'
    )
    step = duration_seconds(t.step, "--step")
    return f"sum_over_time(({idle_now})[{t.window}:{t.step}]) * {step:g} / 3600"


def deployment_of(pod: str) -> str:
    match = _DEPLOYMENT_POD.fullmatch(pod)
    return match.group("deployment") if match else pod


@dataclass
class Row:
    tenant: str
    namespace: str
    deployment: str
    pool: str
    node: str
    gpu: str
    uuid: str
    idle_now: bool = False
    wasted_gpu_hours: float = 0.0
    avg_utilization: float | None = None


@dataclass
class WasteReport:
    thresholds: Thresholds
    rows: list[Row] = field(default_factory=list)

    def per_tenant(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for row in self.rows:
            entry = out.setdefault(
                row.tenant, {"wasted_gpu_hours": 0.0, "idle_gpus": 0, "deployments": set()}
            )
            entry["wasted_gpu_hours"] += row.wasted_gpu_hours
            entry["idle_gpus"] += int(row.idle_now)
            if row.idle_now:
                entry["deployments"].add(f"{row.namespace}/{row.deployment}")
        return {
            t: {
                **e,
                "wasted_gpu_hours": round(e["wasted_gpu_hours"], 4),
                "deployments": sorted(e["deployments"]),
            }
            for t, e in sorted(out.items())
        }

    def per(self, *keys: str) -> dict[tuple[str, ...], dict[str, float]]:
        out: dict[tuple[str, ...], dict[str, float]] = defaultdict(
            lambda: {"wasted_gpu_hours": 0.0, "idle_gpus": 0}
        )
        for row in self.rows:
            entry = out[tuple(getattr(row, k) for k in keys)]
            entry["wasted_gpu_hours"] += row.wasted_gpu_hours
            entry["idle_gpus"] += int(row.idle_now)
        return dict(sorted(out.items()))

    def as_json(self) -> dict[str, Any]:
        t = self.thresholds
        return {
            "window": t.window,
            "step": t.step,
            "thresholds": {"max_utilization_percent": t.max_utilization, "max_memory_mib": t.max_memory_mib},
            "tenants": self.per_tenant(),
            "deployments": [
                {"tenant": k[0], "namespace": k[1], "deployment": k[2], **_rounded(v)}
                for k, v in self.per("tenant", "namespace", "deployment").items()
            ],
            "pools": [{"pool": k[0], **_rounded(v)} for k, v in self.per("pool").items()],
            "gpus": [
                {**row.__dict__, "wasted_gpu_hours": round(row.wasted_gpu_hours, 4)}
                for row in self.rows
                if row.idle_now or row.wasted_gpu_hours > 0
            ],
        }


def _rounded(entry: dict[str, float]) -> dict[str, float]:
    return {"wasted_gpu_hours": round(entry["wasted_gpu_hours"], 4), "idle_gpus": int(entry["idle_gpus"])}


def waste_report(
    prometheus: PrometheusClient, tenants: dict[str, Any], fleet: dict[str, Any], thresholds: Thresholds
) -> WasteReport:
    owners = namespace_index(tenants)
    pools = fleet_index(fleet)["nodes"]
    rows: dict[tuple[str, str], Row] = {}

    def row_of(sample: Sample) -> Row:
        labels = sample.labels
        node, gpu = labels.get("Hostname", "?"), labels.get("gpu", "?")
        key = (node, labels.get("UUID") or gpu)
        if key not in rows:
            namespace = labels.get("namespace", "")
            rows[key] = Row(
                tenant=owners.get(namespace, f"(no tenant: namespace {namespace})"),
                namespace=namespace,
                deployment=deployment_of(labels.get("pod", "")),
                pool=pools[node][1] if node in pools else f"(no pool: node {node})",
                node=node,
                gpu=gpu,
                uuid=labels.get("UUID", ""),
            )
        return rows[key]

    for sample in finite(prometheus.query(wasted_hours_expression(thresholds))):
        row_of(sample).wasted_gpu_hours = sample.value
    for sample in finite(prometheus.query(idle_expression(thresholds))):
        row = row_of(sample)
        row.idle_now, row.avg_utilization = True, sample.value
    ordered = sorted(rows.values(), key=lambda r: (r.tenant, r.namespace, r.deployment, r.node, r.gpu))
    return WasteReport(thresholds, ordered)

"""The trace as a fleet, tenants and workloads, by the rules of a mapping file (pure).

bench/fleet/alibaba-v2023.yaml states the rules in one paragraph; this module applies them and
nothing else, so what the replay reports follows from the trace and that paragraph.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.fleet.trace import TraceNode, TraceTask
from pdp.substrate.labels import (
    DEDICATED_TAINT,
    DEDICATED_TENANT_LABEL,
    POOL_LABEL,
    REGION_LABEL,
    TIER_PRIORITY_CLASS,
)

GPU = "nvidia.com/gpu"
SHARED_GPU = "nvidia.com/gpu.shared"
PRODUCT_LABEL = "nvidia.com/gpu.product"
SHARING_LABEL = "nvidia.com/gpu.sharing-strategy"
TASK_LABEL = "gpupaas.io/trace-task"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
DEFAULT_MAPPING = Path(__file__).with_name("alibaba-v2023.yaml")


class MappingError(ValueError):
    """The mapping file cannot be applied: names the key and the problem."""


@dataclass(frozen=True)
class Tenant:
    name: str
    tier: str
    isolation: str
    residency: str
    sharing: bool
    group: str = ""
    dedicated: str = ""  # the cluster whose dedicated pool it owns

    @property
    def namespace(self) -> str:
        return f"{self.name}-jobs"

    @property
    def borrows(self) -> bool:
        """Spot tenants allow preemption here (policy_document), so they may borrow idle capacity
        beyond their entitlement, preemptibly: the entitlement is their floor, not a cap."""
        return self.tier == "spot"


@dataclass(frozen=True)
class Placed:
    """A node of the trace where the rules put it."""

    node: TraceNode
    cluster: str
    pool: str
    kind: str  # dedicated, time-slicing, whole
    owner: str = ""  # the tenant of a dedicated pool

    @property
    def gpu_class(self) -> str:
        return self.node.model


@dataclass(frozen=True)
class Arrival:
    """A task of the trace as the replay submits it."""

    task: TraceTask
    tenant: Tenant
    at: float  # seconds from the start of the trace
    until: float  # math.inf: still running when the trace ends
    pod: dict[str, Any]


@dataclass
class Plan:
    mapping: Mapping[str, Any]
    nodes: list[Placed]
    tenants: dict[str, Tenant]
    fleet: dict[str, Any]
    policies: dict[str, dict[str, Any]]
    arrivals: list[Arrival] = field(default_factory=list)

    @property
    def span(self) -> float:
        """Trace seconds from the first arrival to the last arrival or deletion."""
        ends = [a.until for a in self.arrivals if a.until != math.inf] + [a.at for a in self.arrivals]
        return max(ends, default=0.0) - min((a.at for a in self.arrivals), default=0.0)

    def node_objects(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(Node, its status) per node."""
        return [node_object(p, self.mapping) for p in self.nodes]


def load_mapping(path: Path = DEFAULT_MAPPING) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        raise MappingError(f"{path}: not a mapping document")
    for key in ("clusters", "pools", "tiers", "tenants", "entitlement_factor", "qos_without_column"):
        if key not in doc:
            raise MappingError(f"{path}: `{key}` is missing")
    tiers = {t["tier"] for t in doc["tenants"]}
    for qos, tier in doc["tiers"].items():
        if tier not in tiers:
            raise MappingError(f"{path}: tiers.{qos}: no tenant has tier {tier!r}")
    return doc


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def stable_hash(name: str) -> int:
    """A number from a name that is the same on every run and machine (Python's hash() is not),
    so a sample of the trace keeps the proportions of the whole, whatever rows it keeps."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def place(node: TraceNode, mapping: Mapping[str, Any]) -> Placed:
    clusters = list(mapping["clusters"])
    h = stable_hash(node.name)
    cluster = clusters[h % len(clusters)]
    slot = (h // len(clusters)) % 10
    pools = mapping["pools"]
    owner = next((t["name"] for t in mapping["tenants"] if t.get("dedicated") == cluster), "")
    if slot in pools["dedicated_slots"] and owner:
        kind = "dedicated"
    elif slot in pools["time_slicing_slots"]:
        kind, owner = "time-slicing", ""
    else:
        kind, owner = "whole", ""
    pool = f"{cluster}-{_slug(node.model)}-{kind}-{node.gpus}g"
    return Placed(node, cluster, pool, kind, owner)


def node_object(p: Placed, mapping: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    region = mapping["clusters"][p.cluster]["region"]
    labels = {
        "kubernetes.io/hostname": p.node.name,
        REGION_LABEL: region,
        "topology.kubernetes.io/zone": f"{region}a",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.count": str(p.node.gpus),
        PRODUCT_LABEL: f"ALIBABA-{p.node.model}" + ("-SHARED" if p.kind == "time-slicing" else ""),
        SHARING_LABEL: "time-slicing" if p.kind == "time-slicing" else "none",
        # As GPU feature discovery labels a time-sliced node: the share of a GPU each replica is.
        **(
            {"nvidia.com/gpu.replicas": str(mapping["pools"]["sharing_replicas"])}
            if p.kind == "time-slicing"
            else {}
        ),
        POOL_LABEL: p.pool,
        "type": "kwok",
    }
    taints = []
    if p.kind == "dedicated":
        labels[DEDICATED_TENANT_LABEL] = p.owner
        taints.append({"key": DEDICATED_TAINT, "value": p.owner, "effect": "NoSchedule"})
    gpus = (
        {SHARED_GPU: str(p.node.gpus * int(mapping["pools"]["sharing_replicas"]))}
        if p.kind == "time-slicing"
        else {GPU: str(p.node.gpus)}
    )
    resources = {"cpu": f"{p.node.cpu_milli}m", "memory": f"{p.node.memory_mib}Mi", "pods": "250", **gpus}
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": p.node.name, "labels": labels, "annotations": {KWOK_ANNOTATION: "fake"}},
        "spec": {"taints": taints} if taints else {},
    }
    return node, {"status": {"capacity": resources, "allocatable": resources}}


def fleet_document(nodes: Sequence[Placed], mapping: Mapping[str, Any]) -> dict[str, Any]:
    classes = {
        model: {
            "vendor": "nvidia",
            "resource": GPU,
            "node_label": {"key": PRODUCT_LABEL, "value": f"ALIBABA-{model}"},
        }
        for model in sorted({p.gpu_class for p in nodes})
    }
    clusters: dict[str, Any] = {}
    for name, c in mapping["clusters"].items():
        pools: dict[str, Any] = {}
        for p in (p for p in nodes if p.cluster == name):
            pool = pools.setdefault(
                p.pool,
                {
                    "gpu_class": p.gpu_class,
                    "isolation": "dedicated" if p.kind == "dedicated" else "shared",
                    **({"tenant": p.owner} if p.kind == "dedicated" else {}),
                    "sharing_strategy": "time-slicing" if p.kind == "time-slicing" else "none",
                    **(
                        {"sharing_replicas": mapping["pools"]["sharing_replicas"]}
                        if p.kind == "time-slicing"
                        else {}
                    ),
                    "nodes": 0,
                    "node_names": [],
                    "gpus_per_node": p.node.gpus,
                },
            )
            pool["nodes"] += 1
            pool["node_names"].append(p.node.name)
        clusters[name] = {"region": c["region"], "jurisdiction": c["jurisdiction"], "pools": pools}
    return {"name": "alibaba-gpu-v2023", "gpu_classes": classes, "clusters": clusters}


def _qos(task: TraceTask, mapping: Mapping[str, Any]) -> str:
    if task.qos:
        return task.qos
    return str(mapping["qos_without_column"]["even" if stable_hash(task.name) % 2 == 0 else "odd"])


def tenant_of(task: TraceTask, tenants: Sequence[Tenant], mapping: Mapping[str, Any]) -> Tenant:
    tier = mapping["tiers"][_qos(task, mapping)]
    choices = [t for t in tenants if t.tier == tier]
    if any(t.group for t in choices):
        group = "shares" if task.shares_a_gpu else "whole"
        choices = [t for t in choices if t.group == group]
    return choices[stable_hash(task.name) % len(choices)]


def times(task: TraceTask, index: int, mapping: Mapping[str, Any], trace_end: float) -> tuple[float, float]:
    """(arrival, end) in trace seconds. A task deleted when the trace ends was still running when
    the recording stopped: it is never deleted (math.inf), and holds its GPUs to the end."""
    if task.creation is None:
        start = index * float(mapping["arrival_seconds"])
        return start, start + float(mapping["duration_seconds"])
    end = float(task.deletion if task.deletion is not None else task.creation)
    return float(task.creation), math.inf if end >= trace_end else end


def held(task: TraceTask, mapping: Mapping[str, Any]) -> dict[str, int]:
    """The extended resources the task's pod requests."""
    if task.shares_a_gpu:
        replicas = int(mapping["pools"]["sharing_replicas"])
        return {SHARED_GPU: math.ceil(task.gpu_milli * replicas / 1000)}
    return {GPU: task.gpus} if task.gpus else {}


def peak_demand(spans: Sequence[tuple[float, float, int]]) -> int:
    """The most thousandths of a GPU held at once by (start, end, thousandths) spans; a span
    ending when another starts does not overlap it (at one time, ends sort before starts)."""
    events = sorted([(end, -n) for _, end, n in spans] + [(start, n) for start, _, n in spans])
    level = peak = 0
    for _, delta in events:
        level += delta
        peak = max(peak, level)
    return peak


def reachable(tenant: Tenant, nodes: Sequence[Placed], mapping: Mapping[str, Any]) -> list[Placed]:
    """The nodes whose pools the tenant's isolation, residency and sharing allow."""
    out = []
    for p in nodes:
        jurisdiction = mapping["clusters"][p.cluster]["jurisdiction"]
        if tenant.residency != "any" and tenant.residency != f"{jurisdiction.lower()}-only":
            continue
        if tenant.isolation == "dedicated":
            if p.kind == "dedicated" and p.owner == tenant.name:
                out.append(p)
        elif p.kind == "whole" or (p.kind == "time-slicing" and tenant.sharing):
            out.append(p)
    return out


def entitlements(
    tenant: Tenant, spans: Sequence[tuple[float, float, int]], nodes: Sequence[Placed], factor: float
) -> dict[str, int]:
    gpus_by_class: dict[str, int] = defaultdict(int)
    for p in nodes:
        gpus_by_class[p.gpu_class] += p.node.gpus
    total = sum(gpus_by_class.values())
    peak = peak_demand(spans) / 1000
    out = {c: math.ceil(factor * peak * g / total) for c, g in sorted(gpus_by_class.items())} if total else {}
    return {c: n for c, n in out.items() if n > 0} or ({min(gpus_by_class): 1} if gpus_by_class else {})


def policy_document(tenant: Tenant, entitled: Mapping[str, int]) -> dict[str, Any]:
    sla = {"enterprise": "latency-critical", "standard": "throughput", "spot": "best-effort"}[tenant.tier]
    return {
        "name": tenant.name,
        "display_name": f"{tenant.name} ({tenant.tier}, trace tenant)",
        "tier": tenant.tier,
        "isolation": tenant.isolation,
        "data_residency": tenant.residency,
        "allow_preemption": tenant.borrows,
        "allow_gpu_sharing": tenant.sharing,
        "namespaces": [tenant.namespace],
        "entitlements": dict(entitled),
        "sla": {"class": sla},
    }


def pod_object(task: TraceTask, tenant: Tenant, mapping: Mapping[str, Any]) -> dict[str, Any]:
    limits = {k: str(v) for k, v in held(task, mapping).items()}
    requests = {"cpu": f"{task.cpu_milli}m", "memory": f"{task.memory_mib}Mi", **limits}
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "task",
                "image": "registry.invalid/trace-task:1",
                "resources": {"requests": requests, "limits": limits},
            }
        ],
        "priorityClassName": TIER_PRIORITY_CLASS[tenant.tier],
        # No kubelet confirms a deletion here (KWOK's pod-delete stage does it at once anyway).
        "terminationGracePeriodSeconds": 0,
        "restartPolicy": "Never",
    }
    if tenant.isolation == "dedicated":
        spec["tolerations"] = [
            {"key": DEDICATED_TAINT, "operator": "Equal", "value": tenant.name, "effect": "NoSchedule"}
        ]
    if task.gpu_spec:
        products = [f"ALIBABA-{m}" + ("-SHARED" if task.shares_a_gpu else "") for m in task.gpu_spec]
        spec["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": PRODUCT_LABEL, "operator": "In", "values": products}]}
                    ]
                }
            }
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": task.name, "namespace": tenant.namespace, "labels": {TASK_LABEL: task.name}},
        "spec": spec,
    }


def plan(nodes: Sequence[TraceNode], tasks: Sequence[TraceTask], mapping: Mapping[str, Any]) -> Plan:
    placed = [place(n, mapping) for n in nodes]
    tenants = {
        t["name"]: Tenant(
            t["name"],
            t["tier"],
            t["isolation"],
            t["residency"],
            bool(t["sharing"]),
            t.get("group", ""),
            t.get("dedicated", ""),
        )
        for t in mapping["tenants"]
    }
    ordered = list(tenants.values())
    arrivals = []
    spans: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    trace_end = max((float(t.deletion) for t in tasks if t.deletion is not None), default=math.inf)
    for index, task in enumerate(tasks):
        tenant = tenant_of(task, ordered, mapping)
        start, end = times(task, index, mapping, trace_end)
        arrivals.append(Arrival(task, tenant, start, end, pod_object(task, tenant, mapping)))
        spans[tenant.name].append((start, end, task.thousandths))
    arrivals.sort(key=lambda a: (a.at, a.task.number))
    factor = float(mapping["entitlement_factor"])
    policies = {
        name: policy_document(t, entitlements(t, spans[name], reachable(t, placed, mapping), factor))
        for name, t in tenants.items()
    }
    return Plan(mapping, placed, tenants, fleet_document(placed, mapping), policies, arrivals)

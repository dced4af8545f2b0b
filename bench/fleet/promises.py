"""The promises a GPU platform sells, checked on the cluster's own state (pure).

Each check reads what the API server holds (pods, where they are bound, the nodes' labels and
taints), never the PDP's decision log: a decision that was right but not realized, or a pod that got
past the PDP, shows here. Every count must be 0.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.fleet.mapping import GPU, SHARED_GPU, Placed, Tenant

TERMINAL = frozenset({"Succeeded", "Failed"})
# DisruptionTarget reasons: kube-scheduler's preemption, the taint eviction of a failed node.
PREEMPTED = "PreemptionByScheduler"
EVICTED = "DeletionByTaintManager"
CHECKS = (
    "entitlement exceeded",
    "residency broken",
    "foreign pod on a dedicated node",
    "unshared tenant on a shared GPU",
    "spot above its tier",
    "enterprise pod preempted",
)


@dataclass
class PodView:
    """What the replay knows of a pod from the API server's watch."""

    name: str
    namespace: str
    node: str = ""
    phase: str = "Pending"
    priority_class: str = ""
    resources: dict[str, int] = field(default_factory=dict)
    created: float = 0.0
    bound: float | None = None
    ended: float | None = None
    deleted_by_replay: bool = False
    unschedulable: bool = False  # the scheduler tried and found no node (PodScheduled False)
    unschedulable_why: str = ""  # the reason most of the nodes were refused for, last time
    created_ok: bool = False  # the API server accepted it (a deletion waits for that)
    delete_requested: bool = False
    disruption: str = ""  # the reason of a DisruptionTarget condition (preemption, taint eviction)
    replaces: str = ""  # the pod this one re-places after an eviction
    job: bool = False  # a Kueue Job's (bench/fleet/jobs.py): the view of the Job until its pod exists
    pod: str = ""  # a Job's view: `namespace/name` of its pod, once the job controller made it

    @property
    def holds_capacity(self) -> bool:
        return bool(self.node) and self.phase not in TERMINAL and self.ended is None


def pod_view(obj: Mapping[str, Any]) -> PodView:
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status") or {}
    resources: dict[str, int] = defaultdict(int)
    for c in spec.get("containers", []):
        for name, q in ((c.get("resources") or {}).get("limits") or {}).items():
            if name in (GPU, SHARED_GPU):
                resources[name] += int(q)
    disruption = next(
        (c.get("reason", "") for c in status.get("conditions") or () if c.get("type") == "DisruptionTarget"),
        "",
    )
    refusal = next(
        (
            c.get("message") or ""
            for c in status.get("conditions") or ()
            if c.get("type") == "PodScheduled" and c.get("status") == "False"
        ),
        None,
    )
    return PodView(
        meta.get("name", ""),
        meta.get("namespace", ""),
        spec.get("nodeName") or "",
        status.get("phase") or "Pending",
        spec.get("priorityClassName") or "",
        dict(resources),
        disruption=disruption,
        unschedulable=refusal is not None,
        unschedulable_why=why_unschedulable(refusal or ""),
    )


_NODES_REFUSED = re.compile(r"(\d+) (.+?)(?=, \d+ |$)")
_CODE = re.compile(r"\b([A-Z][A-Z_]{4,}):")


def why_unschedulable(message: str) -> str:
    """The reason kube-scheduler gives for the most nodes in a PodScheduled False message ("0/405
    nodes are available: 300 Insufficient cpu, 105 ENTITLEMENT_EXCEEDED: node ..., ..."): the
    policy's first reason code where the extender refused them, else the scheduler's words."""
    _, _, refused = message.partition("nodes are available: ")
    refused = refused.partition(". preemption:")[0].removesuffix(".")
    counts: Counter[str] = Counter()
    for n, text in _NODES_REFUSED.findall(refused):
        code = _CODE.search(text)
        reason = code.group(1) if code else re.sub(r"\{[^}]*\}", "{...}", text.strip())
        counts[reason] += int(n)
    return counts.most_common(1)[0][0] if counts else ("" if not message else message[:80])


@dataclass(frozen=True)
class Violation:
    check: str
    pod: str
    detail: str


def pod_violations(
    pod: PodView,
    nodes: Mapping[str, Placed],
    tenants_by_namespace: Mapping[str, Tenant],
    jurisdictions: Mapping[str, str],
    spot_priority_class: str,
) -> list[Violation]:
    """The promises one pod breaks where it is: every check but the entitlement, which is its
    tenant's over all its pods (`check`, RunningHoldings)."""
    tenant = tenants_by_namespace.get(pod.namespace)
    if tenant is None:
        return []
    out: list[Violation] = []
    where = f"{pod.namespace}/{pod.name}"
    if tenant.tier == "enterprise" and pod.disruption == PREEMPTED:
        out.append(Violation("enterprise pod preempted", where, f"{pod.disruption} on node {pod.node}"))
    node = nodes.get(pod.node) if pod.holds_capacity else None
    if node is None:
        return out
    jurisdiction = jurisdictions[node.cluster]
    if tenant.residency != "any" and tenant.residency != f"{jurisdiction.lower()}-only":
        out.append(
            Violation("residency broken", where, f"{tenant.residency} tenant on {pod.node} ({jurisdiction})")
        )
    if node.kind == "dedicated" and node.owner != tenant.name:
        out.append(Violation("foreign pod on a dedicated node", where, f"{pod.node} is {node.owner}'s"))
    if node.kind == "time-slicing" and not tenant.sharing:
        out.append(Violation("unshared tenant on a shared GPU", where, f"{pod.node} time-slices"))
    if tenant.tier == "spot" and pod.priority_class != spot_priority_class:
        out.append(Violation("spot above its tier", where, f"priority class {pod.priority_class or 'none'}"))
    return out


def check(
    pods: Iterable[PodView],
    nodes: Mapping[str, Placed],
    tenants_by_namespace: Mapping[str, Tenant],
    entitlements: Mapping[str, Mapping[str, int]],
    jurisdictions: Mapping[str, str],
    sharing_replicas: int,
    spot_priority_class: str,
) -> list[Violation]:
    """The violations in one state of the cluster: each pod's, then each tenant's entitlement."""
    out: list[Violation] = []
    held: dict[tuple[str, str], float] = defaultdict(float)
    for pod in pods:
        out += pod_violations(pod, nodes, tenants_by_namespace, jurisdictions, spot_priority_class)
        counted = entitled_holding(pod, nodes, tenants_by_namespace, sharing_replicas)
        if counted is not None:
            held[counted[0]] += counted[1]
    for (tenant_name, gpu_class), gpus in sorted(held.items()):
        over = entitlement_exceeded(tenant_name, gpu_class, gpus, entitlements)
        if over is not None:
            out.append(over)
    return out


def gpus_of(pod: PodView, sharing_replicas: int) -> float:
    """The GPUs a pod holds: whole ones, and a share as 1/replicas of its node's GPU."""
    return pod.resources.get(GPU, 0) + pod.resources.get(SHARED_GPU, 0) / sharing_replicas


def entitled_holding(
    pod: PodView,
    nodes: Mapping[str, Placed],
    tenants_by_namespace: Mapping[str, Tenant],
    sharing_replicas: int,
) -> tuple[tuple[str, str], float] | None:
    """(tenant, GPU class) and the GPUs a pod counts against its tenant's entitlement; None when
    it holds none or its tenant borrows (a spot tenant's entitlement is a floor)."""
    tenant, node = tenants_by_namespace.get(pod.namespace), nodes.get(pod.node)
    if not pod.holds_capacity or tenant is None or node is None or tenant.borrows:
        return None
    gpus = gpus_of(pod, sharing_replicas)
    return ((tenant.name, node.gpu_class), gpus) if gpus else None


def entitlement_exceeded(
    tenant_name: str, gpu_class: str, held: float, entitlements: Mapping[str, Mapping[str, int]]
) -> Violation | None:
    limit = entitlements.get(tenant_name, {}).get(gpu_class, 0)
    if held <= limit + 1e-9:
        return None
    return Violation(
        "entitlement exceeded", tenant_name, f"holds {held:g} {gpu_class} GPUs, entitled to {limit}"
    )


class RunningHoldings:
    """What each tenant that cannot borrow holds of each GPU class, kept as pods start and stop
    holding capacity, so that its entitlement is checked at every binding: a pod that is bound
    and gone between two samples of the cluster counts too."""

    def __init__(
        self,
        nodes: Mapping[str, Placed],
        tenants_by_namespace: Mapping[str, Tenant],
        entitlements: Mapping[str, Mapping[str, int]],
        sharing_replicas: int,
    ) -> None:
        self.nodes, self.tenants, self.entitlements = nodes, tenants_by_namespace, entitlements
        self.sharing_replicas = sharing_replicas
        self.held: dict[tuple[str, str], float] = defaultdict(float)
        self._of: dict[str, tuple[tuple[str, str], float]] = {}

    def apply(self, key: str, pod: PodView) -> Violation | None:
        """Pod `key` as the watch saw it last; the violation its binding makes, if any."""
        if not pod.holds_capacity:
            gone = self._of.pop(key, None)
            if gone is not None:
                self.held[gone[0]] -= gone[1]
            return None
        counted = (
            None
            if key in self._of
            else entitled_holding(pod, self.nodes, self.tenants, self.sharing_replicas)
        )
        if counted is None:
            return None
        where, gpus = counted
        self._of[key] = counted
        self.held[where] += gpus
        return entitlement_exceeded(where[0], where[1], self.held[where], self.entitlements)

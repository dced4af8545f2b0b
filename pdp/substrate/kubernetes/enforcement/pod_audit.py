"""Cluster drift audit: running GPU pods the current policy revision would refuse, or would not
place on the node they run on (a tenant's residency tightened, a node relabelled...).

Each bound pod is decided twice, as the enforcement points decide a new one: `admit_workload` (the
webhook's question) and `place_workload` with its own node as the only candidate (the scheduler
extender's). Read-only: nothing is evicted or recorded; `pdp audit-cluster` prints the findings,
the lifecycle worker keeps them (pdp/lifecycle/services/drift.py) and can remediate them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pdp.decision import Outcome
from pdp.metrics import drift_audited
from pdp.point import DecideOptions, DecisionPoint
from pdp.substrate.kubernetes.enforcement.extender import place_intent, verdict_from_decision
from pdp.substrate.kubernetes.enforcement.workloads import InvalidObject, asks_for_gpus, workload_from_object

REFUSED = "refused"  # the revision would not admit the pod
MISPLACED = "misplaced"  # admitted, but not on the node it runs on
_DONE = ("Succeeded", "Failed")
# The label the lifecycle puts on the pods of its deployments (pdp/substrate/kubernetes/workload.py).
DEPLOYMENT_LABEL = "gpupaas.io/deployment"


@dataclass(frozen=True)
class Finding:
    namespace: str
    pod: str
    node: str
    tenant: str
    finding: str  # REFUSED or MISPLACED
    reasons: str
    revision: str
    uid: str = ""
    # the lifecycle deployment the pod belongs to (its gpupaas.io/deployment label), if any
    deployment: str = ""

    def as_json(self) -> dict[str, str]:
        return dict(self.__dict__)


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


@dataclass(frozen=True)
class Snapshot:
    """The cluster as the audit reads it: node labels, the bound unfinished pods (as plain
    objects) and which namespaces occupy each node."""

    nodes: dict[str, dict[str, str]]
    pods: list[dict[str, Any]]
    occupants: dict[str, dict[str, str]]  # node -> pod uid -> namespace

    def candidate(self, node: str, uid: str) -> dict[str, Any]:
        """`node` as a place_workload candidate for the pod `uid` (the other pods' namespaces)."""
        others = sorted(ns for u, ns in self.occupants.get(node, {}).items() if u != uid)
        return {"name": node, "labels": self.nodes.get(node, {}), "namespaces": others}


def _running(pod: Mapping[str, Any]) -> bool:
    """Bound, not finished and not being deleted (an evicted pod on its way out is no drift)."""
    return bool(
        (pod.get("spec") or {}).get("nodeName")
        and (pod.get("status") or {}).get("phase") not in _DONE
        and not (pod.get("metadata") or {}).get("deletionTimestamp")
    )


def snapshot(api: Any, timeout: tuple[float, float] | None = None) -> Snapshot:
    """`timeout`: (connect, read) seconds of each list call (default: the client's, none)."""
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(api)
    limits: dict[str, Any] = {"_request_timeout": timeout} if timeout else {}
    listed = core.list_node(**limits).items
    nodes = {n["metadata"]["name"]: _labels(n) for n in api.sanitize_for_serialization(listed)}
    pods = [
        p
        for p in api.sanitize_for_serialization(core.list_pod_for_all_namespaces(**limits).items)
        if _running(p)
    ]
    occupants: dict[str, dict[str, str]] = defaultdict(dict)
    for pod in pods:
        meta = pod["metadata"]
        occupants[pod["spec"]["nodeName"]][meta.get("uid") or meta["name"]] = meta["namespace"]
    return Snapshot(nodes, pods, dict(occupants))


def check_pod(
    pod: dict[str, Any], cluster: Snapshot, point: DecisionPoint, options: DecideOptions
) -> tuple[bool, Finding | None]:
    """(whether the pod was decided as a GPU pod, its finding under the revision in force or None)."""
    meta, node = pod["metadata"], pod["spec"]["nodeName"]
    uid = str(meta.get("uid") or "")
    deployment = _labels(pod).get(DEPLOYMENT_LABEL, "")
    pod.setdefault("kind", "Pod")
    try:
        workload = workload_from_object(pod, meta["namespace"])
    except InvalidObject as exc:
        # not counted as audited: no decision was asked (the finding says why)
        return False, Finding(
            meta["namespace"], meta["name"], node, "", REFUSED, str(exc), "", uid, deployment
        )
    if not asks_for_gpus(workload):
        return False, None
    admitted = point.decide({"kind": "admit_workload", "admit_workload": workload}, options)
    if admitted.outcome is not Outcome.ALLOW:
        reasons = "; ".join(f"{r.code}: {r.message}" for r in admitted.reasons)
        return True, Finding(
            meta["namespace"], meta["name"], node, admitted.tenant, REFUSED, reasons,
            admitted.bundle_revision, uid, deployment,
        )  # fmt: skip
    placed = point.decide(place_intent(workload, [cluster.candidate(node, uid or meta["name"])]), options)
    verdict = verdict_from_decision(placed, [node])
    if node in verdict.eligible:
        return True, None
    why = verdict.unresolvable.get(node) or verdict.resolvable.get(node, "")
    return True, Finding(
        meta["namespace"], meta["name"], node, placed.tenant, MISPLACED, why, placed.bundle_revision,
        uid, deployment,
    )  # fmt: skip


def eligible_elsewhere(
    pod: dict[str, Any], cluster: Snapshot, point: DecisionPoint, options: DecideOptions
) -> list[str]:
    """The other nodes of the cluster the revision would place the pod on (none when it would
    not admit it at all)."""
    meta, node = pod["metadata"], pod["spec"]["nodeName"]
    uid = str(meta.get("uid") or meta["name"])
    pod.setdefault("kind", "Pod")
    try:
        workload = workload_from_object(pod, meta["namespace"])
    except InvalidObject:
        return []
    others = [cluster.candidate(n, uid) for n in sorted(cluster.nodes) if n != node]
    if not others:
        return []
    admitted = point.decide({"kind": "admit_workload", "admit_workload": workload}, options)
    if admitted.outcome is not Outcome.ALLOW:
        return []
    placed = point.decide(place_intent(workload, others), options)
    return sorted(verdict_from_decision(placed, [c["name"] for c in others]).eligible)


def audit(
    api: Any, point: DecisionPoint, *, timeout: float = 10.0, export: bool = True
) -> tuple[int, list[Finding]]:
    """(GPU pods audited, findings) of every bound, running GPU pod the API server lists;
    `export`: the result as the gpupaas_pdp_drift_* gauges."""
    cluster = snapshot(api)
    options = DecideOptions(timeout=timeout, record=False, entry_point="cli")
    audited, findings = 0, []
    for pod in cluster.pods:
        decided, finding = check_pod(pod, cluster, point, options)
        audited += decided
        if finding is not None:
            findings.append(finding)
    if export:
        export_findings(findings, audited)
    return audited, findings


def export_findings(findings: list[Finding], audited: int, unreachable: int | None = None) -> None:
    counts = {kind: sum(1 for f in findings if f.finding == kind) for kind in (REFUSED, MISPLACED)}
    drift_audited(counts, audited, unreachable)

"""Cluster drift audit: running GPU pods the current policy revision would refuse, or would not
place on the node they run on (a tenant's residency tightened, a node relabelled...).

Each bound pod is decided twice, as the enforcement points decide a new one: `admit_workload` (the
webhook's question) and `place_workload` with its own node as the only candidate (the scheduler
extender's). Read-only: nothing is evicted or recorded; `pdp audit-cluster` prints the findings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pdp.decision import Outcome
from pdp.enforcement.extender import place_intent, verdict_from_decision
from pdp.enforcement.workloads import InvalidObject, asks_for_gpus, workload_from_object
from pdp.metrics import drift_audited
from pdp.point import DecideOptions, DecisionPoint

REFUSED = "refused"  # the revision would not admit the pod
MISPLACED = "misplaced"  # admitted, but not on the node it runs on
_DONE = ("Succeeded", "Failed")


@dataclass(frozen=True)
class Finding:
    namespace: str
    pod: str
    node: str
    tenant: str
    finding: str  # REFUSED or MISPLACED
    reasons: str
    revision: str

    def as_json(self) -> dict[str, str]:
        return dict(self.__dict__)


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return {str(k): str(v) for k, v in labels.items()}


def audit(api: Any, point: DecisionPoint, *, timeout: float = 10.0) -> tuple[int, list[Finding]]:
    """(GPU pods audited, findings) of every bound, running GPU pod the API server lists."""
    from kubernetes import client as k8s

    core = k8s.CoreV1Api(api)
    nodes = {
        n["metadata"]["name"]: _labels(n) for n in api.sanitize_for_serialization(core.list_node().items)
    }
    pods = [
        p
        for p in api.sanitize_for_serialization(core.list_pod_for_all_namespaces().items)
        if (p.get("spec") or {}).get("nodeName") and (p.get("status") or {}).get("phase") not in _DONE
    ]
    occupants: dict[str, dict[str, str]] = defaultdict(dict)  # node -> pod uid -> namespace
    for pod in pods:
        meta = pod["metadata"]
        occupants[pod["spec"]["nodeName"]][meta.get("uid") or meta["name"]] = meta["namespace"]
    options = DecideOptions(timeout=timeout, record=False, entry_point="cli")
    audited, findings = 0, []
    for pod in pods:
        meta, node = pod["metadata"], pod["spec"]["nodeName"]
        pod.setdefault("kind", "Pod")
        try:
            workload = workload_from_object(pod, meta["namespace"])
        except InvalidObject as exc:
            findings.append(Finding(meta["namespace"], meta["name"], node, "", REFUSED, str(exc), ""))
            continue
        if not asks_for_gpus(workload):
            continue
        audited += 1
        admitted = point.decide({"kind": "admit_workload", "admit_workload": workload}, options)
        if admitted.outcome is not Outcome.ALLOW:
            reasons = "; ".join(f"{r.code}: {r.message}" for r in admitted.reasons)
            findings.append(
                Finding(
                    meta["namespace"], meta["name"], node, admitted.tenant, REFUSED, reasons,
                    admitted.bundle_revision,
                )
            )  # fmt: skip
            continue
        uid = meta.get("uid") or meta["name"]
        others = sorted(ns for u, ns in occupants[node].items() if u != uid)
        candidate = {"name": node, "labels": nodes.get(node, {}), "namespaces": others}
        placed = point.decide(place_intent(workload, [candidate]), options)
        verdict = verdict_from_decision(placed, [node])
        if node not in verdict.eligible:
            why = verdict.unresolvable.get(node) or verdict.resolvable.get(node, "")
            findings.append(
                Finding(
                    meta["namespace"], meta["name"], node, placed.tenant, MISPLACED,
                    why, placed.bundle_revision,
                )
            )  # fmt: skip
    drift_audited(
        {kind: sum(1 for f in findings if f.finding == kind) for kind in (REFUSED, MISPLACED)}, audited
    )
    return audited, findings

"""kube-scheduler's preempt verb on the wire: the pod, its candidate nodes and each node's victims
of an ExtenderPreemptionArgs, and the ExtenderPreemptionResult built from a verdict on those
nodes as they would be once their victims are gone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pdp.substrate.kubernetes.enforcement.extender.verdict import Verdict
from pdp.substrate.kubernetes.enforcement.extender.wire import (
    BadArgs,
    Candidates,
    ClusterView,
    named_candidates,
)


@dataclass(frozen=True)
class Preemption:
    """kube-scheduler's preemption candidates for a pod (ExtenderPreemptionArgs): each node with
    the pods its own plugins would evict there."""

    candidates: Candidates  # the pod, and the candidate nodes by name (labels from the cluster view)
    victims: Mapping[str, Mapping[str, Any]]  # node -> MetaVictims, as the answer sends them back
    gone: frozenset[str]  # every victim's uid (uids are unique in a cluster: one set serves all nodes)


def _victim_uid(pod: Any, meta: bool) -> str | None:
    if not isinstance(pod, Mapping):
        return None
    uid = pod.get("UID") if meta else (pod.get("metadata") or {}).get("uid")
    return uid if isinstance(uid, str) and uid else None


def parse_preemption(args: Any, cluster: ClusterView | None) -> Preemption:
    """The pod, candidate nodes and victims of decoded ExtenderPreemptionArgs (pure, given the
    cluster view). A nodeCacheCapable scheduler sends NodeNameToMetaVictims (victims by uid), any
    other NodeNameToVictims (whole pods); the answer is NodeNameToMetaVictims either way. A node
    with no victim is left out: kube-scheduler refuses an answer naming one."""
    if not isinstance(args, Mapping):
        raise BadArgs("the extender arguments are not a JSON object")
    meta = args.get("NodeNameToMetaVictims") is not None
    field = "NodeNameToMetaVictims" if meta else "NodeNameToVictims"
    by_node = args.get(field)
    by_node = {} if by_node is None else by_node
    if not isinstance(by_node, Mapping):
        raise BadArgs(f"{field} is not an object of node names")
    victims: dict[str, Mapping[str, Any]] = {}
    gone: set[str] = set()
    for node, entry in by_node.items():
        if not isinstance(node, str) or not node:
            raise BadArgs(f"{field}: a node name is empty")
        pods = entry.get("Pods") if isinstance(entry, Mapping) else None
        pods = [] if isinstance(entry, Mapping) and pods is None else pods
        if not isinstance(pods, list):
            raise BadArgs(f"{field}.{node}.Pods is not a list")
        uids = [_victim_uid(p, meta) for p in pods]
        missing = [i for i, uid in enumerate(uids) if uid is None]
        if missing:
            raise BadArgs(f"{field}.{node}.Pods[{missing[0]}] has no uid")
        violations = entry.get("NumPDBViolations", 0)
        if type(violations) is not int:
            raise BadArgs(f"{field}.{node}.NumPDBViolations is not an integer")
        if uids:
            victims[node] = {"Pods": [{"UID": uid} for uid in uids], "NumPDBViolations": violations}
            gone.update(uid for uid in uids if uid is not None)
    if victims and cluster is None:
        raise BadArgs(f"{field} needs the extender's cluster view (run it with a kubeconfig)")
    candidates = named_candidates(args.get("Pod"), list(victims), cluster, strings=True)
    return Preemption(candidates, victims, frozenset(gone))


def preemption_result(preemption: Preemption, verdict: Verdict) -> dict[str, Any]:
    """ExtenderPreemptionResult: the candidates the policy accepts once their victims are gone,
    with the victims as given (pure)."""
    kept = {n: v for n, v in preemption.victims.items() if n in verdict.eligible}
    return {"NodeNameToMetaVictims": kept}

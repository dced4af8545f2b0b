"""Node faults read from Kubernetes node conditions (pure), for the incident detector.

A node is faulty when its `Ready` condition has been `False` or `Unknown` for longer than a grace
(the kubelet stopped reporting, or reports the node not ready: the node lifecycle controller's own
NotReady/Unreachable signals), or when a problem condition is `True`. Problem conditions follow
node-problem-detector's convention (a condition type per problem, `True` while it lasts); the
default ones are the GPU health checks NPD publishes on AKS, `GPUMissing` (fewer GPUs than the
node should have) and `GPUXIDErrors` (XIDs in the kernel log); any type an operator's checks
publish can be added.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

READY_GRACE_SECONDS = 300.0
GPU_CONDITIONS = ("GPUMissing", "GPUXIDErrors")
NOT_READY = ("False", "Unknown")


@dataclass
class ConditionFault:
    node: str
    conditions: list[dict[str, str]] = field(default_factory=list)

    @property
    def cause(self) -> str:
        """e.g. "node condition Ready=Unknown, GPUXIDErrors=True" (the incident taint's value)."""
        return "node condition " + ", ".join(f"{c['type']}={c['status']}" for c in self.conditions)


def _since(condition: Mapping[str, Any]) -> datetime | None:
    raw = condition.get("lastTransitionTime")
    if isinstance(raw, datetime):
        return raw
    if isinstance(raw, str) and raw:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return None


def condition_faults(
    nodes: Iterable[Mapping[str, Any]],
    now: datetime,
    ready_grace: float = READY_GRACE_SECONDS,
    problems: Iterable[str] = GPU_CONDITIONS,
) -> list[ConditionFault]:
    """The faulty nodes among `nodes` (Node objects as the API server returns them), by name. A
    `Ready` condition without a transition time counts from now (never faulty at once)."""
    wanted = set(problems)
    out = []
    for node in nodes:
        name = str((node.get("metadata") or {}).get("name", ""))
        fault = ConditionFault(name)
        for c in (node.get("status") or {}).get("conditions") or []:
            kind, status = str(c.get("type", "")), str(c.get("status", ""))
            since = _since(c)
            if kind == "Ready" and status in NOT_READY:
                if since is None or (now - since).total_seconds() < ready_grace:
                    continue
            elif not (kind in wanted and status == "True"):
                continue
            fault.conditions.append({
                "type": kind, "status": status, "reason": str(c.get("reason") or ""),
                "since": since.isoformat() if since else "",
            })  # fmt: skip
        if name and fault.conditions:
            out.append(fault)
    return sorted(out, key=lambda f: f.node)


def merged_reports(xid_faults: Iterable[Any], faults: Iterable[ConditionFault]) -> list[dict[str, Any]]:
    """One POST /v1/incidents body per node: a node with both a fatal XID (pdp/telemetry/xid.py's
    NodeFault) and a faulty condition is one incident, its cause naming both."""
    reports: dict[str, dict[str, Any]] = {}
    for x in xid_faults:
        reports[x.node] = x.report()
    for f in faults:
        if f.node in reports:
            reports[f.node]["cause"] = f"{reports[f.node]['cause']}; {f.cause}"[:200]
        else:
            reports[f.node] = {"node": f.node, "cause": f.cause[:200]}
    return [reports[n] for n in sorted(reports)]


def read_nodes(kubeconfig: str) -> list[dict[str, Any]]:
    """Every Node of the cluster, as JSON documents (the kubernetes client's list, serialized)."""
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    try:
        listed = client.CoreV1Api(api).list_node()
        return list(api.sanitize_for_serialization(listed).get("items") or [])
    finally:
        api.close()

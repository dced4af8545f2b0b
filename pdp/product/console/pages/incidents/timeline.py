"""A timeline per node, from the audit records the incident workflow wrote
(pdp/lifecycle/workflows/incident.py; pure: the records and the workflows' DBOS statuses are given):
the fault (`incident.opened`: the XIDs the GPU telemetry saw), the cordon (`node.cordoned`), the
deployments given up for room (`incident.degraded`), each re-placement with its tenant's tier and
time (`incident.notified`, one per tenant, lists them), the SLA impact (`incident.sla_impact`) and
the resolution (`node.released`), in the order they happened.

For a tenant, only the incidents that concern it (those with a record of its own) and, in them, the
node's steps and its own: the fault without the pods (they name other tenants'), the resolution
without the operator's comment, no other tenant's deployment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

PREFIX = "incident-"  # pdp.product.api.incidents.PREFIX: incident-<node>-<hex>
FAULT, CORDON, DEGRADED, REPLACED, IMPACT, RESOLVED = (
    "fault", "cordon", "degraded", "re-placement", "SLA impact", "resolution",
)  # fmt: skip
# Steps written within the same instant keep the workflow's order.
ORDER = {kind: n for n, kind in enumerate((FAULT, CORDON, DEGRADED, REPLACED, IMPACT, RESOLVED))}
TIERS = {"enterprise": 0, "standard": 1, "spot": 2}
ENDED_IN_ERROR = ("ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")
OPEN, OUT_OF_SERVICE, RESOLVED_STATE, FAILED = "open", "node out of service", "resolved", "failed"


@dataclass(frozen=True)
class Step:
    at: datetime
    kind: str
    what: str  # in words
    tenant: str = ""
    tier: str = ""
    deployment: str = ""


@dataclass(frozen=True)
class Incident:
    incident: str
    node: str
    state: str
    steps: tuple[Step, ...]  # in the order they happened

    @property
    def opened_at(self) -> datetime:
        return self.steps[0].at

    @property
    def resolved_at(self) -> datetime | None:
        return next((s.at for s in self.steps if s.kind == RESOLVED), None)


@dataclass(frozen=True)
class NodeTimeline:
    node: str
    incidents: tuple[Incident, ...]  # newest first

    @property
    def open(self) -> bool:
        return any(i.state != RESOLVED_STATE for i in self.incidents)


def at(record: Mapping[str, Any]) -> datetime:
    """A record's time (the audit trail's ISO 8601, in UTC)."""
    when = datetime.fromisoformat(str(record["at"]))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _listed(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values)


def _fault(detail: Mapping[str, Any], admin: bool) -> str:
    fault = detail.get("fault") or {}
    xids, cause = list(fault.get("xids") or []), str(fault.get("cause") or "")
    seen = f"XID {_listed(xids)}" if xids else "fault"
    if fault.get("gpus"):
        seen += f" on GPU {_listed(fault['gpus'])}"
    words = [seen]
    if cause and cause != f"xid {','.join(map(str, xids))}":  # the detector's cause says no more
        words.append(cause)
    if admin and fault.get("pods"):  # the pods name every tenant's: the admin's view only
        words.append("pods " + _listed(f"{p.get('namespace')}/{p.get('pod')}" for p in fault["pods"]))
    if admin and (fault.get("reported_by") or detail.get("actor")):
        words.append(f"reported by {fault.get('reported_by') or detail.get('actor')}")
    return "; ".join(words)


def _cordon(detail: Mapping[str, Any]) -> str:
    taint = detail.get("taint") or {}
    shown = f"{taint.get('key')}={taint.get('value')}:{taint.get('effect')}" if taint else "its taint"
    return f"node cordoned (unschedulable) and tainted {shown}"


def _replaced(entry: Mapping[str, Any]) -> str:
    if entry.get("replaced"):
        changed = entry.get("changed") or []
        return "re-placed" + (f" (changed: {_listed(changed)})" if changed else "")
    reason = str(entry.get("reason") or "not re-placed")
    return f"not moved: {reason}"


def _degraded(entry: Mapping[str, Any]) -> str:
    action = "preempted and queued" if entry.get("action") == "preempt" else "scaled down"
    return f"{action} to {entry.get('to_replicas')} replicas, giving up {entry.get('gpus')} GPUs"


def _resolution(detail: Mapping[str, Any], admin: bool) -> str:
    words = ["node released (taint removed, schedulable again)"]
    if detail.get("out_of_service_minutes") is not None:
        words.append(f"out of service {detail['out_of_service_minutes']} minutes")
    if admin and detail.get("resolved_by"):
        words.append(f"resolved by {detail['resolved_by']}")
    if admin and detail.get("comment"):
        words.append(f"“{detail['comment']}”")
    return "; ".join(words)


def _epoch(value: Any, fallback: datetime) -> datetime:
    return datetime.fromtimestamp(float(value), UTC) if isinstance(value, int | float) else fallback


def steps(records: Iterable[Mapping[str, Any]], tenant: str | None) -> list[Step]:
    """The steps of one incident's records (any order), as `tenant` (None: the admin) sees them."""
    admin = tenant is None
    rows = list(records)
    # The tier each tenant was re-placed at (incident.notified carries it).
    tiers = {
        str(r.get("tenant")): str((r.get("detail") or {}).get("tier") or "")
        for r in rows
        if r.get("event") == "incident.notified"
    }
    out: list[Step] = []
    for r in rows:
        event, detail, owner = str(r.get("event")), r.get("detail") or {}, str(r.get("tenant") or "")
        if owner and not admin and owner != tenant:
            continue  # another tenant's step
        tier = tiers.get(owner, "")
        if event == "incident.opened":
            out.append(Step(at(r), FAULT, _fault(detail, admin)))
        elif event == "node.cordoned":
            out.append(Step(at(r), CORDON, _cordon(detail)))
        elif event == "incident.degraded":
            for d in detail.get("deployments") or []:
                out.append(Step(at(r), DEGRADED, _degraded(d), owner, tier, str(d.get("deployment", ""))))
        elif event == "incident.notified":
            for e in detail.get("replaced") or []:
                when = _epoch(e.get("at"), at(r))
                out.append(Step(when, REPLACED, _replaced(e), owner, tier, str(e.get("deployment", ""))))
        elif event == "incident.sla_impact":
            what = f"{detail.get('gpu_minutes', 0)} GPU-minutes out of service until re-placed"
            out.append(Step(at(r), IMPACT, what, owner, tier))
        elif event == "node.released":
            out.append(Step(at(r), RESOLVED, _resolution(detail, admin)))
    return sorted(out, key=lambda s: (s.at, ORDER[s.kind], TIERS.get(s.tier, 9), s.tenant, s.deployment))


def _node(incident: str, records: list[Mapping[str, Any]]) -> str:
    for r in records:
        node = (r.get("detail") or {}).get("node")
        if node:
            return str(node)
    return incident.removeprefix(PREFIX).rsplit("-", 1)[0]  # incident-<node>-<hex>


def _state(found: list[Step], status: str) -> str:
    kinds = {s.kind for s in found}
    if RESOLVED in kinds:
        return RESOLVED_STATE
    if status in ENDED_IN_ERROR:
        return FAILED
    return OUT_OF_SERVICE if CORDON in kinds else OPEN


def timelines(
    records: Iterable[Mapping[str, Any]], statuses: Mapping[str, str], tenant: str | None = None
) -> list[NodeTimeline]:
    """Each node's incidents, newest first, the nodes with an incident not resolved first, then the
    most recent. `records`: the audit trail in any order (records of no incident are passed over);
    `statuses`: the incident workflows' DBOS status; `tenant`: whose view (None: the admin's)."""
    by_incident: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        workflow_id = str(r.get("workflow_id") or "")
        if workflow_id.startswith(PREFIX) and ":" not in workflow_id:
            by_incident.setdefault(workflow_id, []).append(r)
    by_node: dict[str, list[Incident]] = {}
    for incident, rows in by_incident.items():
        if tenant is not None and not any(r.get("tenant") == tenant for r in rows):
            continue  # an incident that did not concern the tenant: none of it is shown
        found = steps(rows, tenant)
        if not found:
            continue
        node = _node(incident, rows)
        state = _state(found, statuses.get(incident, ""))
        by_node.setdefault(node, []).append(Incident(incident, node, state, tuple(found)))
    nodes = [
        NodeTimeline(node, tuple(sorted(found, key=lambda i: i.opened_at, reverse=True)))
        for node, found in by_node.items()
    ]
    nodes.sort(key=lambda n: n.incidents[0].opened_at, reverse=True)
    nodes.sort(key=lambda n: not n.open)  # stable: open first, each newest first
    return nodes

"""The reclaims the lifecycle ran, one per reclaim workflow (pdp/lifecycle/workflows/reclaim.py),
from the audit records it wrote (pure: the records and the workflows' DBOS statuses are given).

A reclaim's state is the last step its records show, never inferred from the clock:
- `in flight`: notified (`reclaim.notified`) of a reclaim that acts, waiting out its grace and the
  re-check, or not yet notified (deciding);
- `done`: `reclaim.applied`, the scale made;
- `cancelled`: `reclaim.cancelled`, the tenant put the GPUs to work again (or idleness could not
  be confirmed, or the deployment changed) during the grace;
- `failed`: `reclaim.failed` (the scale was not applied), or a workflow that ended in error before
  writing its last record (its DBOS status says so, its records cannot);
- `notified only`: a `notify` plan (an enterprise or entitlement-protected deployment): the notice
  is all that happens;
- `refused`: `reclaim.refused`, the PDP refused it or the deployment no longer ran.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

PREFIX = "reclaim:"  # pdp.lifecycle.workflows.reclaim.workflow_prefix: reclaim:<tenant>:<deployment>:<n>
IN_FLIGHT, DONE, CANCELLED, FAILED, NOTIFIED_ONLY, REFUSED = (
    "in flight", "done", "cancelled", "failed", "notified only", "refused",
)  # fmt: skip
# The record that ends a reclaim, and the state it leaves it in.
ENDS = {
    "reclaim.applied": DONE,
    "reclaim.cancelled": CANCELLED,
    "reclaim.failed": FAILED,
    "reclaim.refused": REFUSED,
}
# DBOS statuses of a workflow that will not run on: one left without its last record failed.
ENDED_IN_ERROR = ("ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


@dataclass(frozen=True)
class Reclaim:
    workflow_id: str
    tenant: str
    deployment: str
    state: str
    started_at: datetime  # its first record
    gpu_class: str = ""
    pools: tuple[str, ...] = ()
    idle_gpus: int | None = None  # idle when it was decided
    release_gpus: int | None = None  # the GPUs the plan takes back
    action: str = ""  # the plan: reclaim, scale_to_minimum or notify
    from_replicas: int | None = None
    target_replicas: int | None = None
    notified_at: datetime | None = None
    grace_seconds: float | None = None
    ended_at: datetime | None = None
    reason: str = ""  # why it was cancelled, failed or refused

    @property
    def grace_ends_at(self) -> datetime | None:
        """When the grace the notice announced is over (the re-check follows)."""
        if self.notified_at is None or self.grace_seconds is None or self.action == "notify":
            return None
        return self.notified_at + timedelta(seconds=self.grace_seconds)


def at(record: Mapping[str, Any]) -> datetime:
    """A record's time (the audit trail's ISO 8601, in UTC)."""
    when = datetime.fromisoformat(str(record["at"]))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _parts(workflow_id: str) -> tuple[str, str]:
    """(tenant, deployment) named by a reclaim's workflow id."""
    _, tenant, deployment, *_ = [*workflow_id.split(":"), "", "", ""]
    return tenant, deployment


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _reason(detail: Mapping[str, Any]) -> str:
    if detail.get("reason"):
        return str(detail["reason"])
    if detail.get("reasons"):
        return "the PDP refused it: " + ", ".join(map(str, detail["reasons"]))
    if detail.get("scale"):
        return f"the scale was not applied ({detail['scale']})"
    return ""


def one(workflow_id: str, records: list[Mapping[str, Any]], status: str = "") -> Reclaim:
    """The reclaim of `workflow_id` from its records (in any order) and its DBOS `status`."""
    records = sorted(records, key=at)
    tenant, deployment = _parts(workflow_id)
    fields: dict[str, Any] = {
        "workflow_id": workflow_id,
        "tenant": str(records[0].get("tenant") or tenant),
        "deployment": deployment,
        "started_at": at(records[0]),
    }
    state = ""
    for r in records:
        event, detail = str(r.get("event")), r.get("detail") or {}
        if event == "decision" and detail.get("kind") == "reclaim":
            payload = detail.get("payload") or {}
            fields["gpu_class"] = str(payload.get("gpu_class") or fields.get("gpu_class", ""))
            fields["idle_gpus"] = _int(payload.get("idle_gpus"))
            fields["from_replicas"] = _int(payload.get("current_replicas"))
        elif event == "reclaim.notified":
            fields.update(
                notified_at=at(r),
                action=str(detail.get("action", "")),
                grace_seconds=float(detail.get("grace_seconds") or 0),
                release_gpus=_int(detail.get("release_gpus")),
                target_replicas=_int(detail.get("target_replicas")),
                from_replicas=_int(detail.get("current_replicas")),
                idle_gpus=_int(detail.get("idle_gpus")),
                pools=tuple(str(p) for p in detail.get("pools") or ()),
            )
            if detail.get("gpu_class"):
                fields["gpu_class"] = str(detail["gpu_class"])
            if detail.get("action") == "notify":
                state = NOTIFIED_ONLY
        elif event in ENDS:
            state, fields["ended_at"] = ENDS[event], at(r)
            fields["reason"] = "" if state == DONE else _reason(detail)
            if detail.get("deployment"):
                fields["deployment"] = str(detail["deployment"])
    if state in ("", NOTIFIED_ONLY) and status in ENDED_IN_ERROR:
        state, fields["reason"] = FAILED, f"the workflow ended ({status}) before its last step"
    return Reclaim(state=state or IN_FLIGHT, **fields)


def reclaims(records: Iterable[Mapping[str, Any]], statuses: Mapping[str, str]) -> list[Reclaim]:
    """Every reclaim the records show, one per workflow: those in flight first, each group newest
    first. `records`: audit records in any order (others than a reclaim's are passed over);
    `statuses`: the DBOS status of each reclaim workflow."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        workflow_id = str(r.get("workflow_id") or "")
        if workflow_id.startswith(PREFIX) and workflow_id.count(":") == 3:  # not its :scale child
            grouped.setdefault(workflow_id, []).append(r)
    found = [one(w, rs, statuses.get(w, "")) for w, rs in grouped.items()]
    found.sort(key=lambda r: r.started_at, reverse=True)
    found.sort(key=lambda r: r.state != IN_FLIGHT)  # stable: in flight first, each newest first
    return found

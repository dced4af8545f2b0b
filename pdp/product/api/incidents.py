"""Incidents: a GPU or node fault reported (by the detector, `pdp lifecycle incident detect`, or an
operator), followed, and resolved. Admin only: an incident names every tenant it affects; a tenant
learns of the ones that concern it from its own audit trail (`incident.notified`,
`incident.sla_impact`).
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from dbos import DBOS, SetWorkflowID
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import incidents
from pdp.lifecycle.workflows import incident as workflow
from pdp.product.auth import Caller, require_admin

router = APIRouter(tags=["incidents"])
PREFIX = "incident-"
OPEN = ("PENDING", "ENQUEUED")
# One incident opened at a time in this worker, so two reports of one fault open it once.
_opening = threading.Lock()


class FaultyPod(BaseModel):
    namespace: str = Field(min_length=1)
    pod: str = Field(min_length=1)


class IncidentReport(BaseModel):
    node: str = Field(min_length=1, description="the node of the faulty GPU, or the faulty node")
    cause: str = Field(
        min_length=1,
        max_length=200,
        description="what was seen, e.g. 'xid 79' or 'node condition Ready=False'",
    )
    xids: list[int] = Field(default_factory=list, description="the XID codes seen (DCGM_FI_DEV_XID_ERRORS)")
    gpus: list[str] = Field(default_factory=list, description="the faulty GPUs (their index on the node)")
    pods: list[FaultyPod] = Field(
        default_factory=list, description="pods holding the faulty GPUs (dcgm-exporter's pod labels)"
    )


class Resolution(BaseModel):
    comment: str = Field(default="", max_length=1000)


def _open_for(node: str) -> list[str]:
    found = DBOS.list_workflows(workflow_id_prefix=f"{PREFIX}{node}-", status=list(OPEN))
    return [w.workflow_id for w in found if _node_of(w.input) == node]


def _node_of(inputs: Any) -> str | None:
    args = (inputs or {}).get("args") or ()
    return str(args[0]) if args else None


def _view(workflow_id: str) -> dict[str, Any]:
    status = DBOS.get_workflow_status(workflow_id)
    if (
        status is None
        or not workflow_id.startswith(PREFIX)
        or status.name.rsplit(".", 1)[-1] != "incident_workflow"
    ):
        raise HTTPException(404, f"incident {workflow_id!r} not found")
    summary = DBOS.get_event(workflow_id, workflow.INCIDENT_EVENT, timeout_seconds=0)
    return {
        "incident": workflow_id,
        "status": status.status,
        "error": str(status.error) if status.error else None,
        **(summary if isinstance(summary, dict) else {"node": _node_of(status.input), "state": "open"}),
    }


@router.post("/v1/incidents", status_code=202)
def open_incident(body: IncidentReport, caller: Caller) -> dict[str, Any]:
    """Start incident response for a faulty node; 409 while an incident of that node is open."""
    require_admin(caller)
    if not incidents.known_node(current(), body.node):
        raise HTTPException(422, f"node: {body.node!r} is not a node of the fleet or of the cluster")
    fault = {**body.model_dump(exclude={"node"}), "reported_by": caller.actor}
    with _opening:
        already = _open_for(body.node)
        if already:
            raise HTTPException(409, f"node {body.node!r} already has an open incident: {already[0]}")
        workflow_id = f"{PREFIX}{body.node}-{uuid.uuid4().hex[:10]}"
        with SetWorkflowID(workflow_id):
            DBOS.start_workflow(workflow.incident_workflow, body.node, fault, caller.actor)
    return {"incident": workflow_id, "node": body.node, "state": "open"}


@router.get("/v1/incidents")
def list_incidents(caller: Caller, open_only: bool = False) -> list[dict[str, Any]]:
    require_admin(caller)
    found = DBOS.list_workflows(
        workflow_id_prefix=PREFIX, status=list(OPEN) if open_only else None, sort_desc=True, limit=200,
        load_input=False, load_output=False,
    )  # fmt: skip
    return [_view(w.workflow_id) for w in found if ":" not in w.workflow_id]


@router.get("/v1/incidents/{incident_id}")
def show_incident(incident_id: str, caller: Caller) -> dict[str, Any]:
    require_admin(caller)
    return _view(incident_id)


@router.post("/v1/incidents/{incident_id}/resolve", status_code=202)
def resolve_incident(incident_id: str, body: Resolution, caller: Caller) -> dict[str, Any]:
    """The operator's word that the node is fixed: the workflow releases it (untaint, uncordon)."""
    require_admin(caller)
    view = _view(incident_id)
    if view["status"] not in OPEN:
        raise HTTPException(409, f"incident {incident_id!r} is {view['status']}, not open")
    DBOS.send(incident_id, {"by": caller.actor, "comment": body.comment}, workflow.RESOLVE_TOPIC)
    return {"incident": incident_id, "resolution": "sent"}

"""Workflows and approvals: a request's progress and decision by workflow id (a tenant sees only
its own), the open approvals, and an admin's answer to one."""

from __future__ import annotations

from typing import Any

from dbos import DBOS
from fastapi import APIRouter, HTTPException

from pdp.lifecycle import workflows
from pdp.lifecycle.runtime import current
from pdp.lifecycle.storage.store import NotFound
from pdp.product.api import accepted
from pdp.product.api.models import ApprovalAnswer
from pdp.product.auth import Caller, require_admin

router = APIRouter(tags=["workflows"])


@router.get("/v1/workflows/{workflow_id}")
def workflow(workflow_id: str, caller: Caller) -> dict[str, Any]:
    status = DBOS.get_workflow_status(workflow_id)
    if status is None:
        raise HTTPException(404, f"workflow {workflow_id!r} not found")
    tenant = _workflow_tenant(status.input)
    if not caller.is_admin and tenant != caller.tenant:
        raise HTTPException(404, f"workflow {workflow_id!r} not found")
    steps = DBOS.list_workflow_steps(workflow_id)
    return {
        "workflow_id": workflow_id,
        "name": status.name,
        "tenant": tenant,
        "status": status.status,
        "steps": workflows.progress(list(steps)),
        # The request's latest decision (outcome, reasons, decision id, bundle revision) and
        # where it stands; null until the workflow has decided.
        "decision": accepted.decision(workflow_id),
        "output": workflows.to_json(status.output),
        "error": str(status.error) if status.error else None,
    }


@router.get("/v1/approvals")
def approvals(caller: Caller, all: bool = False) -> list[dict[str, Any]]:
    return current().store.approvals(None if caller.is_admin else caller.tenant, open_only=not all)


@router.post("/v1/approvals/{approval_id}", status_code=202)
def answer(approval_id: str, body: ApprovalAnswer, caller: Caller) -> dict[str, Any]:
    require_admin(caller)
    try:
        approval = current().store.approval(approval_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    if approval["status"] not in ("pending", "escalated"):
        raise HTTPException(409, f"approval {approval_id!r} is already {approval['status']}")
    # The answer names the decision it answers: an answer that arrives after the request
    # asked again (with new figures) does not answer the new question.
    answer = {
        "approved": body.approved,
        "by": caller.actor,
        "comment": body.comment,
        "decision_id": approval["decision"].get("decision_id", ""),
    }
    DBOS.send(approval_id, answer, workflows.APPROVAL_TOPIC)
    return {"approval_id": approval_id, "sent": "approved" if body.approved else "rejected"}


def _workflow_tenant(inputs: Any) -> str | None:
    args = (inputs or {}).get("args") or ()
    if not args:
        return None
    first = args[0]
    return str(first.get("name")) if isinstance(first, dict) else str(first)

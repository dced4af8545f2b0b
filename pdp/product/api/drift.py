"""Cluster drift in the product API (issue 15): the last audit's findings (GET /v1/drift; a tenant
token sees only its own workloads' findings), an audit now (POST /v1/drift/audit, admin) and the
remediation of one finding (POST /v1/drift/{finding}/remediate, admin): a durable workflow
(pdp/lifecycle/workflows/drift.py), one at a time per finding.
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS, SetWorkflowID
from fastapi import APIRouter, HTTPException
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import drift
from pdp.lifecycle.workflows.drift import drift_remediation_workflow
from pdp.product.auth import Caller, require_admin

router = APIRouter(tags=["drift"])
PREFIX = "drift-"
UNFINISHED = ("PENDING", "ENQUEUED")


class Remediation(BaseModel):
    approve: bool = Field(
        default=False,
        description="the admin approves acting on the workload (a tier the policy otherwise only notifies)",
    )


def _auditor() -> drift.Auditor:
    auditor = drift.auditor()
    if not auditor.clusters:
        raise HTTPException(409, "the worker applies to no cluster (dry run): there is nothing to audit")
    return auditor


@router.get("/v1/drift")
def findings(caller: Caller) -> dict[str, Any]:
    """The last audit (periodic, --drift-audit-every, or POST /v1/drift/audit); `finished_at` null
    when none has run yet."""
    report = drift.auditor().last()
    if report is None:
        return {"finished_at": None, "revision": "", "findings": []}
    if caller.is_admin:
        return report.as_json()
    others = [t for t in current().store.tenants() if t["name"] != caller.tenant]
    hide = [str(t["name"]) for t in others]
    hide += [str(ns) for t in others for ns in (t.get("policy") or {}).get("namespaces", [])]
    return report.as_json(str(caller.tenant), hide)


@router.post("/v1/drift/audit")
async def audit_now(caller: Caller) -> dict[str, Any]:
    require_admin(caller)
    auditor = _auditor()
    report = await run_in_threadpool(auditor.audit)
    return report.as_json()


@router.post("/v1/drift/{finding}/remediate", status_code=202)
def remediate(finding: str, body: Remediation, caller: Caller) -> dict[str, Any]:
    """The n-th remediation of the finding (`drift-<finding>-<n>`); while one runs, that one: a
    finding is remediated once at a time, and two admins asking together start the same id, which
    DBOS runs once."""
    require_admin(caller)
    found = drift.auditor().find(finding)
    if found is None:
        raise HTTPException(404, f"finding {finding!r} is not in the last drift audit")
    if not found.finding.tenant:
        raise HTTPException(
            422, f"finding {finding!r}: the pod is no tenant's ({found.finding.reasons}): fix it by hand"
        )
    prefix = f"{PREFIX}{finding}-"
    earlier = [
        w
        for w in DBOS.list_workflows(workflow_id_prefix=prefix, load_input=False, load_output=False)
        if ":" not in w.workflow_id  # not a child (the scale of a scale_to_zero)
    ]
    running = [w.workflow_id for w in earlier if w.status in UNFINISHED]
    if running:
        return {"workflow_id": running[0], "finding": found.as_json(), "already_started": True}
    wid = f"{prefix}{len(earlier) + 1}"
    with SetWorkflowID(wid):
        DBOS.start_workflow(
            drift_remediation_workflow, found.finding.tenant, found.as_json(), body.approve, caller.actor
        )
    return {"workflow_id": wid, "finding": found.as_json(), "already_started": False}

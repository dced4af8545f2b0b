"""How the API answers a request it accepted: with the decision the request's workflow made.

The API's own check only refuses (403, nothing started) or validates; the decision that counts is
made inside the tenant's serialization, against the usage of that moment
(pdp/lifecycle/workflows/serial.py). The API starts the request's workflow and waits a bounded
time (`Settings.decision_wait`) for that decision:
- DENY: 403 with the reasons, the decision id and revision (nothing was applied);
- refused (the request no longer applies, e.g. its deployment is gone): 409;
- any other decision: 202 with the decision and where the request stands (`status`: applied,
  awaiting_approval with `approval_id`, superseded, provisioning, placed, queued, ...);
- no decision yet (the tenant's serialization is busy): 202 with `status` "accepted" and no
  outcome; `GET /v1/workflows/{id}` shows the decision once made, `pdp lifecycle follow` streams it.
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS, SetWorkflowID
from fastapi import HTTPException
from fastapi.responses import JSONResponse

from pdp.lifecycle.runtime import current
from pdp.lifecycle.workflows import DECISION_EVENT


def start(workflow_id: str, func: Any, *args: Any) -> None:
    """Start a request's workflow (durably: recorded before this returns, resumed after a crash).
    Requests run on no queue: they wait for approvals, which must hold no concurrency slot."""
    with SetWorkflowID(workflow_id):
        DBOS.start_workflow(func, *args)


def decision(workflow_id: str, wait: float = 0.0) -> dict[str, Any] | None:
    """The request's latest decision, waiting up to `wait` seconds for its first."""
    found = DBOS.get_event(workflow_id, DECISION_EVENT, timeout_seconds=wait)
    return dict(found) if isinstance(found, dict) else None


def settled(workflow_id: str) -> dict[str, Any] | None:
    """The request's first decision, waited for as long as the API's answer waits."""
    return decision(workflow_id, current().settings.decision_wait)


def answer(workflow_id: str, **extra: Any) -> JSONResponse:
    """The response to an accepted request, from its workflow's decision (module docstring);
    `extra` goes into a 202 only."""
    made = settled(workflow_id)
    if made is None:
        body = {"workflow_id": workflow_id, "status": "accepted", "outcome": None, **extra}
        return JSONResponse(body, status_code=202)
    body = {"workflow_id": workflow_id, **made}
    if made.get("outcome") == "DENY":
        raise HTTPException(403, body)
    if made.get("status") == "refused":
        raise HTTPException(409, body)
    return JSONResponse({**body, **extra}, status_code=202)

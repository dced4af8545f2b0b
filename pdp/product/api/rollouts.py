"""Policy rollouts in the product API (admin only; a tenant token is 403).

- `POST /v1/policy/rollouts` starts a rollout (pdp/lifecycle/workflows/rollout.py) and answers
  with where it stands after `decision_wait` at most (202): `phase` is building, replaying,
  awaiting_approval (with `approval_id` and the report: answer with POST /v1/approvals/{id}),
  activating, watching, active, rejected, failed, superseded or rolled_back.
- `GET /v1/policy/rollouts/{id}`: its phase, both revisions, the report (counts and groups;
  the approval holds the changed decisions), the shadow's figures while watching, its rollback.
- `POST /v1/policy/rollouts/{id}/rollback`: back to the tree active before it (once).
- `GET /v1/policy`: the policy tree and revision the lifecycle's bundle is built from.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from dbos import DBOS
from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import policy_trees, rollouts
from pdp.lifecycle.workflows.rollout import ACTIVATED, ROLLOUT_EVENT, rollback_workflow, rollout_workflow
from pdp.product.api import accepted as answers
from pdp.product.auth import Caller, require_admin

router = APIRouter(tags=["policy rollouts"])
# Phases a rollout answers with before decision_wait ends: it needs someone, or it is done.
SETTLED = ("awaiting_approval", "active", "watching", "rejected", "failed", "superseded", "rolled_back")


class RolloutRequest(BaseModel):
    candidate: str = Field(
        min_length=1,
        description="a policy folder on the worker's machine (or a repository holding policies/), or a "
        "git ref of `repo`",
    )
    repo: str | None = Field(default=None, description="the git repository of a ref (default: the worker's)")
    watch_seconds: float = Field(
        default=0.0, ge=0, le=7 * 24 * 3600, description="after activation, shadow the previous revision"
    )
    max_disagreement_rate: float | None = Field(
        default=None, ge=0, le=1, description="roll back when the shadow disagrees more often than this"
    )
    min_shadow_samples: int = Field(default=20, ge=1, description="shadowed decisions before the rate counts")


class RollbackRequest(BaseModel):
    reason: str = ""


def _state(rollout: str, wait: float = 0.0) -> dict[str, Any] | None:
    found = DBOS.get_event(rollout, ROLLOUT_EVENT, timeout_seconds=wait)
    return dict(found) if isinstance(found, dict) else None


def _view(rollout: str) -> dict[str, Any]:
    status = DBOS.get_workflow_status(rollout)
    if status is None or status.name.rsplit(".", 1)[-1] != rollout_workflow.__name__:
        raise HTTPException(404, f"rollout {rollout!r} not found")
    state = _state(rollout) or {"phase": "accepted"}
    state.pop("trees", None)  # paths on the worker's disk
    view = {"rollout_id": rollout, "workflow_status": status.status, **state}
    rollback = DBOS.get_workflow_status(f"{rollout}:rollback")
    if rollback is not None:
        view["rollback"] = {
            "workflow_id": rollback.workflow_id,
            "status": rollback.status,
            "result": _state(rollback.workflow_id),
        }
    return view


def _settled(rollout: str, wait: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        view = _view(rollout)
        if view.get("phase") in SETTLED or time.monotonic() >= deadline:
            return view
        time.sleep(0.1)


@router.post("/v1/policy/rollouts", status_code=202)
def start_rollout(body: RolloutRequest, caller: Caller) -> JSONResponse:
    require_admin(caller)
    for field, name in (("candidate", body.candidate), ("repo", body.repo)):
        problem = rollouts.name_problem(name) if name is not None else None
        if problem:
            # Refused here: the workflow would fail on it only after decision_wait.
            raise HTTPException(422, f"{field}: {problem}")
    if body.max_disagreement_rate is not None and body.watch_seconds <= 0:
        raise HTTPException(422, "max_disagreement_rate: needs a watch window (watch_seconds > 0)")
    rollout = f"rollout-{uuid.uuid4().hex[:12]}"
    answers.start(rollout, rollout_workflow, body.model_dump(), caller.actor)
    return JSONResponse(_settled(rollout, current().settings.decision_wait), status_code=202)


@router.get("/v1/policy/rollouts/{rollout}")
def get_rollout(rollout: str, caller: Caller) -> dict[str, Any]:
    require_admin(caller)
    return _view(rollout)


@router.post("/v1/policy/rollouts/{rollout}/rollback", status_code=202)
def rollback(rollout: str, body: RollbackRequest, caller: Caller) -> JSONResponse:
    require_admin(caller)
    view = _view(rollout)
    if view.get("phase") not in ACTIVATED and "rollback" not in view:
        raise HTTPException(
            409, f"rollout {rollout!r} is {view.get('phase')}: only an active rollout rolls back"
        )
    workflow_id = f"{rollout}:rollback"
    answers.start(workflow_id, rollback_workflow, {"rollout": rollout}, caller.actor, body.reason)
    result: dict[str, Any] = DBOS.retrieve_workflow(workflow_id).get_result()
    if result.get("status") != "rolled_back":
        raise HTTPException(409, {"rollout_id": rollout, **result})
    return JSONResponse({"rollout_id": rollout, "workflow_id": workflow_id, **result}, status_code=202)


@router.get("/v1/policy")
def active_policy(caller: Caller) -> dict[str, Any]:
    require_admin(caller)
    rt = current()
    pointer = policy_trees.active(rt.settings.state) or {}
    return {
        "revision": rt.policy.revision,
        "policies": str(rt.policy.policies),
        "digest": policy_trees.digest(rt.policy.policies),
        "rollout": pointer.get("rollout"),
    }

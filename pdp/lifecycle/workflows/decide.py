"""Deciding a change inside the tenant's serialization (pdp/lifecycle/workflows/serial.py).

The decision is made from the store as it is when the change runs: the tenant's state, its usage,
and for a scale the replicas the deployment holds then, never figures captured when the request
arrived. The decision record states those figures; a NEEDS_APPROVAL decision within what an
earlier approval of the same request granted (pdp/lifecycle/services/grants.py) is applied, and says so.
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS

from pdp.lifecycle import test_faults
from pdp.lifecycle.runtime import Runtime, current
from pdp.lifecycle.services import grants
from pdp.lifecycle.services.scaling import scale_payload
from pdp.lifecycle.states import DeploymentState, TenantState
from pdp.lifecycle.workflows.steps import intent, key, record_decision, request_id

# Request kinds about one existing deployment: it must be running or queued.
ON_DEPLOYMENT = ("scale", "change_batch_size")


def _payload(rt: Runtime, tenant: str, kind: str, request: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The payload to decide, completed from the store now, or a reason the request cannot apply."""
    deployments = {d["name"]: d for d in rt.store.deployments(tenant)}
    name = str(request.get("deployment", ""))
    dep = deployments.get(name)
    if kind == "deploy_model" and dep is not None:
        return {}, f"deployment {name!r} already exists ({dep['state']})"
    if kind in ON_DEPLOYMENT:
        if dep is None or dep["state"] not in (DeploymentState.RUNNING, DeploymentState.QUEUED):
            return {}, f"deployment {name!r} is {dep['state'] if dep else 'not found'}, not running or queued"
        if kind == "scale":
            return scale_payload(dep, request["target_replicas"]), ""
    return dict(request), ""


def _note(tenant: str, event: str, detail: dict[str, Any]) -> None:
    current().store.record(
        f"{key()}:{event}", event=event, tenant=tenant, workflow_id=request_id(), detail=detail
    )


@DBOS.step()
def decide_change_step(
    tenant: str, kind: str, request: dict[str, Any], actor: str, grant: dict[str, Any]
) -> dict[str, Any]:
    """Decide a change against the store now (run inside the tenant's serialization). Status:
    "allowed" (ALLOW, or NEEDS_APPROVAL within `grant`), "denied", "needs_approval" (with the
    grant its approval would give), "refused" (it no longer applies) or "superseded" (the tenant
    is no longer active)."""
    test_faults.at_step("decide")
    rt = current()
    state = str(rt.store.tenant(tenant)["state"])
    if state != TenantState.ACTIVE:
        reason = f"tenant {tenant!r} is {state}"
        _note(tenant, "request.superseded", {"kind": kind, "reason": reason})
        return {"status": "superseded", "reason": reason}
    payload, refusal = _payload(rt, tenant, kind, request)
    if refusal:
        _note(tenant, "request.refused", {"kind": kind, "reason": refusal})
        return {"status": "refused", "reason": refusal}
    asked = {**intent(tenant, kind, payload, actor), "usage": rt.store.usage(tenant)}
    decision = {**rt.policy.decide(asked), "usage": asked["usage"]}
    covered = grants.covers(grant, asked, decision)
    record_decision(asked, decision, **({"grant": grant} if covered else {}))
    out: dict[str, Any] = {"decision": decision, "payload": payload}
    if decision["outcome"] == "ALLOW" or covered:
        return {**out, "status": "allowed", "grant": grant if covered else {}}
    if decision["outcome"] == "DENY":
        return {**out, "status": "denied"}
    return {**out, "status": "needs_approval", "grant": grants.grant(asked, decision)}

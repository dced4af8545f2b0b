"""Tenants and their requests: onboarding, deployments and their changes, offboarding and the
certificate of destruction. Each change is checked by the PDP here (DENY is 403, nothing starts),
then runs as a durable workflow that decides it again against the usage of the moment it applies."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse

from pdp.config import validate_tenant
from pdp.lifecycle import workflows
from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.runtime import current
from pdp.lifecycle.services.scaling import scale_payload
from pdp.lifecycle.storage import pools as poolrecords
from pdp.lifecycle.storage.store import NotFound
from pdp.product.api import accepted
from pdp.product.api.guards import active_tenant, decide_or_refuse, deployment_named, own_tenant
from pdp.product.api.models import (
    BatchSizeRequest,
    DeployRequest,
    OffboardRequest,
    QuotaRequest,
    ScaleRequest,
    SharingRequest,
    SlaChange,
    TenantDocument,
)
from pdp.product.auth import Caller, require_admin
from pdp.schemas.errors import sentence
from pdp.substrate.kubernetes import runtimes

router = APIRouter(tags=["tenants"])


@router.post("/v1/tenants", status_code=202)
def create_tenant(doc: TenantDocument, caller: Caller) -> JSONResponse:
    workflow_id, answer = onboard(doc.tenant, caller)
    # The tenant's token is shown once; only its hash is kept.
    return accepted.answer(workflow_id, **answer)


def onboard_problems(policy: dict[str, Any]) -> list[str]:
    """What is wrong with the tenant document `policy`, one sentence per problem naming the field."""
    return [sentence(e.path, e.problem) for e in validate_tenant({"tenant": policy})]


def taken(name: str) -> str | None:
    """Why `name` cannot be a new tenant's (onboarding's 409), or None while it is free."""
    try:
        current().store.tenant(name)
    except NotFound:
        return None
    return f"tenant {name!r} already exists in the lifecycle store"


def onboarding_intent(policy: dict[str, Any], actor: str) -> dict[str, Any]:
    """The `create_tenant` intent the PDP decides for onboarding `policy`."""
    name = str(policy["name"])
    return {"kind": "create_tenant", "tenant": name, "actor": actor, "create_tenant": {"policy": policy}}


def onboard(policy: dict[str, Any], caller: Principal) -> tuple[str, dict[str, Any]]:
    """Onboard the tenant `policy` for `caller`, an admin (the API's and the console's one path):
    403 for anyone else, 422 if invalid, 409 if the name is taken, 403 on DENY, else the workflow
    id and the answer carrying the tenant's one-time token (only its hash is kept)."""
    require_admin(caller)
    actor = caller.actor
    problems = onboard_problems(policy)
    if problems:
        raise HTTPException(422, "; ".join(problems))
    name = str(policy["name"])
    reason = taken(name)
    if reason:
        raise HTTPException(409, reason)
    decide_or_refuse(onboarding_intent(policy, actor))
    workflow_id = f"onboard-{name}"
    current().store.create_tenant(policy, workflow_id, actor)
    issued = current().store.credentials.issue_tenant(name, actor=actor)
    accepted.start(workflow_id, workflows.onboard_workflow, policy, actor)
    return workflow_id, {
        "tenant": name,
        "tenant_token": issued.token,
        "tenant_token_id": issued.token_id,
        "tenant_token_expires_at": issued.expires_at,
    }


@router.get("/v1/tenants")
def list_tenants(caller: Caller) -> list[dict[str, Any]]:
    return [t for t in current().store.tenants() if caller.may_act_on(t["name"])]


@router.get("/v1/tenants/{tenant}")
def get_tenant(tenant: str, caller: Caller) -> dict[str, Any]:
    """The tenant and its state; a dedicated tenant also its carved pools and, while it waits
    for capacity, `provisioning` {status, reason, since}."""
    return {**own_tenant(caller, tenant), **poolrecords.status(current().db, tenant)}


def _request(
    tenant: str,
    kind: str,
    payload: dict[str, Any],
    caller: Principal,
    workflow: Any = None,
    asked: dict[str, Any] | None = None,
) -> JSONResponse:
    """Check `payload` (the intent's, completed from the store now) and start the request;
    the workflow gets `asked` (what the caller asked; default: the payload) and completes it
    from the store again when the change runs."""
    active_tenant(caller, tenant)
    payload = {k: v for k, v in payload.items() if v is not None}
    usage = current().store.usage(tenant)
    decide_or_refuse({"kind": kind, "tenant": tenant, "actor": caller.actor, "usage": usage, kind: payload})
    workflow_id = f"{kind}-{tenant}-{uuid.uuid4().hex[:12]}"
    if workflow is None:
        accepted.start(workflow_id, workflows.request_workflow, tenant, kind, asked or payload, caller.actor)
    else:
        accepted.start(workflow_id, workflow, tenant, asked or payload, caller.actor)
    return accepted.answer(workflow_id)


@router.post("/v1/tenants/{tenant}/deployments", status_code=202)
def deploy(tenant: str, body: DeployRequest, caller: Caller) -> JSONResponse:
    own_tenant(caller, tenant)
    if any(d["name"] == body.deployment for d in current().store.deployments(tenant)):
        raise HTTPException(409, f"deployment {body.deployment!r} already exists")
    cls = current().policy.fleet.get("gpu_classes", {}).get(body.gpu_class) or {}
    if body.runtime is not None and cls:
        try:
            runtimes.check(body.model_dump(), str(cls.get("vendor", "nvidia")))
        except runtimes.UnsupportedRuntime as exc:
            raise HTTPException(422, f"runtime: {exc}") from exc
    return _request(tenant, "deploy_model", body.model_dump(), caller)


@router.get("/v1/tenants/{tenant}/deployments")
def deployments(tenant: str, caller: Caller) -> list[dict[str, Any]]:
    own_tenant(caller, tenant)
    return current().store.deployments(tenant)


@router.post("/v1/tenants/{tenant}/deployments/{name}/scale", status_code=202)
def scale(tenant: str, name: str, body: ScaleRequest, caller: Caller) -> JSONResponse:
    own_tenant(caller, tenant)
    payload = scale_payload(deployment_named(tenant, name), body.target_replicas)
    asked = {"deployment": name, "target_replicas": body.target_replicas}
    return _request(tenant, "scale", payload, caller, asked=asked)


@router.post("/v1/tenants/{tenant}/deployments/{name}/batch-size", status_code=202)
def batch_size(tenant: str, name: str, body: BatchSizeRequest, caller: Caller) -> JSONResponse:
    own_tenant(caller, tenant)
    deployment_named(tenant, name)
    return _request(tenant, "change_batch_size", {"deployment": name, "batch_size": body.batch_size}, caller)


@router.post("/v1/tenants/{tenant}/gpu-sharing", status_code=202)
def sharing(tenant: str, body: SharingRequest, caller: Caller) -> JSONResponse:
    return _request(tenant, "request_gpu_sharing", body.model_dump(), caller)


@router.post("/v1/tenants/{tenant}/quotas", status_code=202)
def quotas(tenant: str, body: QuotaRequest, caller: Caller) -> JSONResponse:
    return _request(tenant, "update_quotas", body.model_dump(), caller)


@router.post("/v1/tenants/{tenant}/sla", status_code=202)
def sla(tenant: str, body: SlaChange, caller: Caller) -> JSONResponse:
    """`change_sla`: a new tier and/or isolation; running deployments are re-placed under it."""
    return _request(tenant, "change_sla", body.model_dump(), caller, workflows.sla_workflow)


@router.post("/v1/tenants/{tenant}/offboard", status_code=202)
def offboard(tenant: str, body: OffboardRequest, caller: Caller) -> JSONResponse:
    record = own_tenant(caller, tenant)
    if record["state"] not in ("active", "suspended"):
        raise HTTPException(
            409, f"tenant {tenant!r} is {record['state']}; only active or suspended tenants offboard"
        )
    running = [d for d in current().store.deployments(tenant) if d["state"] == "running"]
    decide_or_refuse(
        {
            "kind": "offboard_tenant",
            "tenant": tenant,
            "actor": caller.actor,
            "offboard_tenant": {"active_workloads": len(running), "reason": body.reason},
        }
    )
    workflow_id = f"offboard-{tenant}"
    accepted.start(workflow_id, workflows.offboard_workflow, tenant, caller.actor, body.reason)
    return accepted.answer(workflow_id)


@router.get("/v1/tenants/{tenant}/certificate")
def certificate(tenant: str, caller: Caller) -> dict[str, Any]:
    own_tenant(caller, tenant)
    try:
        return current().store.certificate(tenant)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc

"""The northbound product API (HTTP + JSON, OpenAPI at /openapi.json).

Every mutating call is decided by the PDP before anything starts: DENY answers 403 with the reason
codes and changes nothing; ALLOW and NEEDS_APPROVAL start a durable workflow (202), which decides
again under the tenant's serialization and waits for approval where needed. A tenant token sees
and acts on its own tenant only; another tenant's resources are 404 (their existence is not
disclosed), admin-only calls are 403.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from dbos import DBOS, SetEnqueueOptions, SetWorkflowID
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from pdp.intents import InvalidIntent
from pdp.lifecycle import anchor, audit, capacity, workflows
from pdp.lifecycle import certificate as certificates
from pdp.lifecycle import errors as request_errors
from pdp.lifecycle.runtime import current
from pdp.lifecycle.store import NotFound
from pdp.lifecycle.tokens import Principal, new_token


class TenantDocument(BaseModel):
    tenant: dict[str, Any] = Field(description="the inner tenant object of a tenant policy document")


class DeployRequest(BaseModel):
    deployment: str
    gpu_class: str
    gpus_per_replica: int
    replicas: int
    sharing: str = "none"
    cluster: str | None = None
    batch_size: int | None = None


class ScaleRequest(BaseModel):
    target_replicas: int


class BatchSizeRequest(BaseModel):
    batch_size: int


class SharingRequest(BaseModel):
    mode: str
    gpu_class: str | None = None


class QuotaRequest(BaseModel):
    entitlements: dict[str, int] = Field(description="the complete new entitlement set")


class SlaChange(BaseModel):
    tier: Literal["enterprise", "standard", "spot"] | None = Field(default=None, description="the new tier")
    isolation: Literal["dedicated", "shared"] | None = Field(default=None, description="the new isolation")


class OffboardRequest(BaseModel):
    reason: str = ""


class CapacityExhaustion(BaseModel):
    tenant: str = Field(description="the tenant whose deployment cannot be placed")
    deployment: DeployRequest
    gpus: int | None = Field(
        default=None, ge=1, description="GPUs that must be freed to place it (default: all it asks for)"
    )
    queue: bool = Field(default=True, description="queue the request when preemption cannot place it")


class CapacityRetry(BaseModel):
    free_gpus: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict,
        description="GPUs per class the scheduler reports free now (optional; recorded before the retry)",
    )


class ApprovalAnswer(BaseModel):
    approved: bool = True
    comment: str = ""


def principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    found = current().store.principal(token) if scheme.lower() == "bearer" and token else None
    if found is None:
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return found


Caller = Annotated[Principal, Depends(principal)]


def _own(caller: Principal, tenant: str) -> dict[str, Any]:
    """The tenant record, or 404 for a tenant the caller may not see."""
    if not caller.may_act_on(tenant):
        raise HTTPException(404, f"tenant {tenant!r} not found")
    try:
        return current().store.tenant(tenant)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


def _admin(caller: Principal) -> None:
    if not caller.is_admin:
        raise HTTPException(403, "this call needs an admin token")


def _decide_or_refuse(intent: dict[str, Any]) -> dict[str, Any]:
    try:
        decision = current().policy.decide(intent)
    except InvalidIntent as exc:
        raise HTTPException(422, str(exc)) from exc
    if decision["outcome"] == "DENY":
        raise HTTPException(
            403,
            {
                "outcome": "DENY",
                "reasons": decision["reasons"],
                "reason_codes": [r["code"] for r in decision["reasons"]],
                "decision_id": decision["decision_id"],
                "bundle_revision": decision["bundle_revision"],
            },
        )
    return decision


def _enqueue(workflow_id: str, tenant: str, func: Any, *args: Any) -> None:
    queue = DBOS.retrieve_queue(workflows.QUEUE)
    if queue is None:
        raise HTTPException(503, "the workflow queue is not registered")
    with SetWorkflowID(workflow_id), SetEnqueueOptions(queue_partition_key=tenant):
        queue.enqueue(func, *args)


def _accepted(workflow_id: str, decision: dict[str, Any], **extra: Any) -> JSONResponse:
    return JSONResponse(
        {
            "workflow_id": workflow_id,
            "outcome": decision["outcome"],
            "reason_codes": [r["code"] for r in decision["reasons"]],
            "decision_id": decision["decision_id"],
            "bundle_revision": decision["bundle_revision"],
            **extra,
        },
        status_code=202,
    )


def create_app() -> FastAPI:
    app = FastAPI(title="gpupaas tenant lifecycle", version="1")
    request_errors.install(app)

    @app.post("/v1/tenants", status_code=202)
    def create_tenant(doc: TenantDocument, caller: Caller) -> JSONResponse:
        _admin(caller)
        policy = doc.tenant
        name = str(policy.get("name", ""))
        try:
            current().store.tenant(name)
            raise HTTPException(409, f"tenant {name!r} already exists in the lifecycle store")
        except NotFound:
            pass
        intent = {
            "kind": "create_tenant",
            "tenant": name,
            "actor": caller.actor,
            "create_tenant": {"policy": policy},
        }
        decision = _decide_or_refuse(intent)
        workflow_id = f"onboard-{name}"
        current().store.create_tenant(policy, workflow_id, caller.actor)
        token = new_token()
        current().store.add_token(token, "tenant", name)
        _enqueue(workflow_id, name, workflows.onboard_workflow, policy, caller.actor)
        # The tenant's token is shown once; only its hash is kept.
        return _accepted(workflow_id, decision, tenant=name, tenant_token=token)

    @app.get("/v1/tenants")
    def list_tenants(caller: Caller) -> list[dict[str, Any]]:
        return [t for t in current().store.tenants() if caller.may_act_on(t["name"])]

    @app.get("/v1/tenants/{tenant}")
    def get_tenant(tenant: str, caller: Caller) -> dict[str, Any]:
        return _own(caller, tenant)

    def _request(
        tenant: str, kind: str, payload: dict[str, Any], caller: Principal, workflow: Any = None
    ) -> JSONResponse:
        record = _own(caller, tenant)
        if record["state"] != "active":
            raise HTTPException(409, f"tenant {tenant!r} is {record['state']}, not active")
        payload = {k: v for k, v in payload.items() if v is not None}
        usage = current().store.usage(tenant)
        decision = _decide_or_refuse(
            {"kind": kind, "tenant": tenant, "actor": caller.actor, "usage": usage, kind: payload}
        )
        workflow_id = f"{kind}-{tenant}-{uuid.uuid4().hex[:12]}"
        if workflow is None:
            _enqueue(workflow_id, tenant, workflows.request_workflow, tenant, kind, payload, caller.actor)
        else:
            _enqueue(workflow_id, tenant, workflow, tenant, payload, caller.actor)
        return _accepted(workflow_id, decision)

    def _deployment(tenant: str, name: str) -> dict[str, Any]:
        for dep in current().store.deployments(tenant):
            if dep["name"] == name:
                return dep
        raise HTTPException(404, f"deployment {name!r} not found")

    @app.post("/v1/tenants/{tenant}/deployments", status_code=202)
    def deploy(tenant: str, body: DeployRequest, caller: Caller) -> JSONResponse:
        return _request(tenant, "deploy_model", body.model_dump(), caller)

    @app.get("/v1/tenants/{tenant}/deployments")
    def deployments(tenant: str, caller: Caller) -> list[dict[str, Any]]:
        _own(caller, tenant)
        return current().store.deployments(tenant)

    @app.post("/v1/tenants/{tenant}/deployments/{name}/scale", status_code=202)
    def scale(tenant: str, name: str, body: ScaleRequest, caller: Caller) -> JSONResponse:
        _own(caller, tenant)
        spec = _deployment(tenant, name)["spec"]
        payload = {
            "deployment": name,
            "gpu_class": spec["gpu_class"],
            "gpus_per_replica": spec["gpus_per_replica"],
            "current_replicas": spec["replicas"],
            "target_replicas": body.target_replicas,
        }
        return _request(tenant, "scale", payload, caller)

    @app.post("/v1/tenants/{tenant}/deployments/{name}/batch-size", status_code=202)
    def batch_size(tenant: str, name: str, body: BatchSizeRequest, caller: Caller) -> JSONResponse:
        _own(caller, tenant)
        _deployment(tenant, name)
        return _request(
            tenant, "change_batch_size", {"deployment": name, "batch_size": body.batch_size}, caller
        )

    @app.post("/v1/tenants/{tenant}/gpu-sharing", status_code=202)
    def sharing(tenant: str, body: SharingRequest, caller: Caller) -> JSONResponse:
        return _request(tenant, "request_gpu_sharing", body.model_dump(), caller)

    @app.post("/v1/tenants/{tenant}/quotas", status_code=202)
    def quotas(tenant: str, body: QuotaRequest, caller: Caller) -> JSONResponse:
        return _request(tenant, "update_quotas", body.model_dump(), caller)

    @app.post("/v1/tenants/{tenant}/sla", status_code=202)
    def sla(tenant: str, body: SlaChange, caller: Caller) -> JSONResponse:
        """`change_sla`: a new tier and/or isolation; running deployments are re-placed under it."""
        return _request(tenant, "change_sla", body.model_dump(), caller, workflows.sla_workflow)

    @app.post("/v1/capacity/exhaustion", status_code=202)
    def exhaustion(body: CapacityExhaustion, caller: Caller) -> JSONResponse:
        """The scheduler (or an operator) reports a deployment it cannot place for lack of GPUs:
        preempt lower tiers if the PDP allows it, else queue or reject the request."""
        _admin(caller)
        tenant = body.tenant
        record = _own(caller, tenant)
        if record["state"] != "active":
            raise HTTPException(409, f"tenant {tenant!r} is {record['state']}, not active")
        payload = {k: v for k, v in body.deployment.model_dump().items() if v is not None}
        if any(d["name"] == payload["deployment"] for d in current().store.deployments(tenant)):
            raise HTTPException(409, f"deployment {payload['deployment']!r} already exists")
        usage = current().store.usage(tenant)
        decision = _decide_or_refuse(
            {"kind": "deploy_model", "tenant": tenant, "actor": caller.actor, "usage": usage,
             "deploy_model": payload}
        )  # fmt: skip
        needed = body.gpus or int(payload["gpus_per_replica"]) * int(payload["replicas"])
        workflow_id = f"capacity-{tenant}-{uuid.uuid4().hex[:12]}"
        _enqueue(
            workflow_id,
            tenant,
            workflows.capacity_workflow,
            tenant,
            payload,
            needed,
            body.queue,
            caller.actor,
        )
        return _accepted(workflow_id, decision)

    @app.post("/v1/capacity/retry", status_code=202)
    def capacity_retry(body: CapacityRetry, caller: Caller) -> JSONResponse:
        """Retry the queued deployments now (capacity returned), optionally with the scheduler's
        report of free GPUs per class."""
        _admin(caller)
        unknown = sorted(set(body.free_gpus) - set(capacity.inventory(current().policy.fleet)))
        if unknown:
            raise HTTPException(422, f"unknown GPU classes: {', '.join(unknown)}")
        queue = DBOS.retrieve_queue(workflows.CAPACITY_QUEUE)
        if queue is None:
            raise HTTPException(503, "the capacity queue is not registered")
        workflow_id = f"capacity-retry-{uuid.uuid4().hex[:12]}"
        with SetWorkflowID(workflow_id):
            queue.enqueue(workflows.retry_queue_workflow, "admin request", caller.actor, body.free_gpus)
        return JSONResponse({"workflow_id": workflow_id}, status_code=202)

    @app.get("/v1/capacity")
    def capacity_view(caller: Caller) -> dict[str, Any]:
        """Per GPU class: capacity, GPUs running deployments hold, free; and the queue in retry order."""
        _admin(caller)
        rt = current()
        fleet, reported, deps = rt.policy.fleet, rt.store.reported_capacity(), rt.store.deployments()
        classes = sorted(set(capacity.inventory(fleet)) | set(reported))
        return {
            "classes": [capacity.headroom(c, fleet, reported, deps) for c in classes],
            "queue": [
                {k: v for k, v in q.items() if k != "spec"}
                for q in capacity.queue_order(rt.store.tenants(), deps)
            ],
            "recent_retries": [
                {"workflow_id": w.workflow_id, "status": w.status, "created_at": w.created_at}
                for w in DBOS.list_workflows(
                    queue_name=workflows.CAPACITY_QUEUE, sort_desc=True, limit=20, load_input=False
                )
            ],
        }

    @app.post("/v1/tenants/{tenant}/offboard", status_code=202)
    def offboard(tenant: str, body: OffboardRequest, caller: Caller) -> JSONResponse:
        record = _own(caller, tenant)
        if record["state"] not in ("active", "suspended"):
            raise HTTPException(
                409, f"tenant {tenant!r} is {record['state']}; only active or suspended tenants offboard"
            )
        running = [d for d in current().store.deployments(tenant) if d["state"] == "running"]
        decision = _decide_or_refuse(
            {
                "kind": "offboard_tenant",
                "tenant": tenant,
                "actor": caller.actor,
                "offboard_tenant": {"active_workloads": len(running), "reason": body.reason},
            }
        )
        workflow_id = f"offboard-{tenant}"
        _enqueue(workflow_id, tenant, workflows.offboard_workflow, tenant, caller.actor, body.reason)
        return _accepted(workflow_id, decision)

    @app.get("/v1/tenants/{tenant}/certificate")
    def certificate(tenant: str, caller: Caller) -> dict[str, Any]:
        _own(caller, tenant)
        try:
            return current().store.certificate(tenant)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc

    @app.get("/v1/certificates/public-key")
    def certificate_public_key() -> dict[str, str]:
        """The key that verifies certificates of destruction. No token: an offboarded tenant's
        tokens are revoked, and a public key is public."""
        key = current().certificate_key
        if key is None:
            raise HTTPException(503, "no certificate signing key loaded")
        public = key.public_key()
        return {
            "algorithm": certificates.ALGORITHM,
            "key_id": certificates.key_id(public),
            "public_key_pem": certificates.public_pem(public),
        }

    @app.get("/v1/workflows/{workflow_id}")
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
            "output": workflows.to_json(status.output),
            "error": str(status.error) if status.error else None,
        }

    @app.get("/v1/approvals")
    def approvals(caller: Caller, all: bool = False) -> list[dict[str, Any]]:
        return current().store.approvals(None if caller.is_admin else caller.tenant, open_only=not all)

    @app.post("/v1/approvals/{approval_id}", status_code=202)
    def answer(approval_id: str, body: ApprovalAnswer, caller: Caller) -> dict[str, Any]:
        _admin(caller)
        try:
            approval = current().store.approval(approval_id)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        if approval["status"] not in ("pending", "escalated"):
            raise HTTPException(409, f"approval {approval_id!r} is already {approval['status']}")
        DBOS.send(
            approval_id, {"approved": body.approved, "by": caller.actor, "comment": body.comment}, "approval"
        )
        return {"approval_id": approval_id, "sent": "approved" if body.approved else "rejected"}

    @app.get("/v1/audit")
    def audit_trail(caller: Caller, tenant: str | None = None) -> PlainTextResponse:
        if not caller.is_admin:
            tenant = caller.tenant
        rt = current()
        text = (
            anchor.export_jsonl(rt.db, rt.anchor.path, tenant, rt.certificate_key)
            if rt.anchor is not None
            else audit.export_jsonl(rt.db, tenant)
        )
        return PlainTextResponse(text, media_type="application/x-ndjson")

    @app.get("/v1/audit/verify")
    def audit_verify(caller: Caller) -> dict[str, Any]:
        _admin(caller)
        rt = current()
        if rt.anchor is None:
            problems = audit.verify(rt.db)
            return {"ok": not problems, "problems": [str(p) for p in problems]}
        report = anchor.verify(rt.db, rt.anchor.path, rt.anchor.key.public_key())
        if rt.anchor.frozen:
            report.notes.append(f"the worker no longer advances the anchor: {rt.anchor.frozen}")
        return report.as_json()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _workflow_tenant(inputs: Any) -> str | None:
    args = (inputs or {}).get("args") or ()
    if not args:
        return None
    first = args[0]
    return str(first.get("name")) if isinstance(first, dict) else str(first)

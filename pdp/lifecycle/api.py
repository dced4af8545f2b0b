"""The northbound product API (HTTP + JSON, OpenAPI at /openapi.json).

Every mutating call is checked by the PDP before anything starts: DENY answers 403 with the reason
codes and changes nothing. Otherwise it starts a durable workflow, which decides the change inside
the tenant's serialization against the usage of that moment and applies it there; the answer is
that decision (pdp/lifecycle/answers.py), or 202 with the request's workflow id when it takes
longer. A tenant token sees and acts on its own tenant only; another tenant's resources are 404
(their existence is not disclosed), admin-only calls are 403.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from dbos import DBOS, SetWorkflowID
from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from pdp import console
from pdp.config import validate_tenant
from pdp.intents import InvalidIntent
from pdp.lifecycle import (
    anchor,
    answers,
    apierrors,
    audit,
    capacity,
    inventory,
    poolrecords,
    pools,
    workflows,
)
from pdp.lifecycle import certificate as certificates
from pdp.lifecycle.adapters.dryrun import DryRunAdapter
from pdp.lifecycle.api_clusters import router as clusters_router
from pdp.lifecycle.api_decisions import router as decisions_router
from pdp.lifecycle.api_drift import router as drift_router
from pdp.lifecycle.api_incidents import router as incidents_router
from pdp.lifecycle.api_reclaim import router as reclaim_router
from pdp.lifecycle.api_rollouts import router as rollouts_router
from pdp.lifecycle.api_tokens import router as tokens_router
from pdp.lifecycle.auth import Caller, require_admin
from pdp.lifecycle.metrics import router as metrics_router
from pdp.lifecycle.runtime import current
from pdp.lifecycle.store import NotFound
from pdp.lifecycle.tokens import Principal
from pdp.schemas import inlined
from pdp.schemas.errors import sentence
from pdp.substrate.kubernetes import runtimes


class TenantDocument(BaseModel):
    # The tenant schema itself (pdp/schemas/tenant.schema.json), so a client generated from
    # /openapi.json knows every field; the document is validated against it on arrival.
    tenant: dict[str, Any] = Field(
        description="the inner tenant object of a tenant policy document",
        json_schema_extra=inlined("tenant", "tenant"),
    )


class DeployRequest(BaseModel):
    deployment: str
    gpu_class: str
    gpus_per_replica: int
    replicas: int
    sharing: str = "none"
    cluster: str | None = None
    batch_size: int | None = None
    runtime: str | None = None
    model: str | None = None


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


def _own(caller: Principal, tenant: str) -> dict[str, Any]:
    """The tenant record, or 404 for a tenant the caller may not see."""
    if not caller.may_act_on(tenant):
        raise HTTPException(404, f"tenant {tenant!r} not found")
    try:
        return current().store.tenant(tenant)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


_admin = require_admin


def _decide_or_refuse(intent: dict[str, Any]) -> dict[str, Any]:
    """The API's own check: a malformed intent is 422, a DENY 403 (nothing started). What it
    allows is decided again by the workflow, against the usage when the change is applied."""
    try:
        decision = current().policy.decide(intent)
    except InvalidIntent as exc:
        raise HTTPException(422, sentence(exc.field, exc.problem)) from exc
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


def create_app() -> FastAPI:
    app = FastAPI(title="gpupaas tenant lifecycle", version="1")
    app.add_exception_handler(RequestValidationError, apierrors.invalid_request)
    app.include_router(tokens_router)
    app.include_router(metrics_router)
    app.include_router(decisions_router)
    app.include_router(clusters_router)
    app.include_router(reclaim_router)
    app.include_router(drift_router)
    app.include_router(incidents_router)
    app.include_router(rollouts_router)
    app.mount(console.PREFIX, console.create(app))  # the web console (pdp/console/)

    @app.post("/v1/tenants", status_code=202)
    def create_tenant(doc: TenantDocument, caller: Caller) -> JSONResponse:
        _admin(caller)
        policy = doc.tenant
        problems = [sentence(e.path, e.problem) for e in validate_tenant({"tenant": policy})]
        if problems:
            raise HTTPException(422, "; ".join(problems))
        name = str(policy["name"])
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
        _decide_or_refuse(intent)
        workflow_id = f"onboard-{name}"
        current().store.create_tenant(policy, workflow_id, caller.actor)
        issued = current().store.credentials.issue_tenant(name, actor=caller.actor)
        answers.start(workflow_id, workflows.onboard_workflow, policy, caller.actor)
        # The tenant's token is shown once; only its hash is kept.
        return answers.answer(
            workflow_id,
            tenant=name,
            tenant_token=issued.token,
            tenant_token_id=issued.token_id,
            tenant_token_expires_at=issued.expires_at,
        )

    @app.get("/v1/tenants")
    def list_tenants(caller: Caller) -> list[dict[str, Any]]:
        return [t for t in current().store.tenants() if caller.may_act_on(t["name"])]

    @app.get("/v1/tenants/{tenant}")
    def get_tenant(tenant: str, caller: Caller) -> dict[str, Any]:
        """The tenant and its state; a dedicated tenant also its carved pools and, while it waits
        for capacity, `provisioning` {status, reason, since}."""
        return {**_own(caller, tenant), **poolrecords.status(current().db, tenant)}

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
        record = _own(caller, tenant)
        if record["state"] != "active":
            raise HTTPException(409, f"tenant {tenant!r} is {record['state']}, not active")
        payload = {k: v for k, v in payload.items() if v is not None}
        usage = current().store.usage(tenant)
        _decide_or_refuse(
            {"kind": kind, "tenant": tenant, "actor": caller.actor, "usage": usage, kind: payload}
        )
        workflow_id = f"{kind}-{tenant}-{uuid.uuid4().hex[:12]}"
        if workflow is None:
            answers.start(
                workflow_id, workflows.request_workflow, tenant, kind, asked or payload, caller.actor
            )
        else:
            answers.start(workflow_id, workflow, tenant, asked or payload, caller.actor)
        return answers.answer(workflow_id)

    def _deployment(tenant: str, name: str) -> dict[str, Any]:
        for dep in current().store.deployments(tenant):
            if dep["name"] == name:
                return dep
        raise HTTPException(404, f"deployment {name!r} not found")

    @app.post("/v1/tenants/{tenant}/deployments", status_code=202)
    def deploy(tenant: str, body: DeployRequest, caller: Caller) -> JSONResponse:
        _own(caller, tenant)
        if any(d["name"] == body.deployment for d in current().store.deployments(tenant)):
            raise HTTPException(409, f"deployment {body.deployment!r} already exists")
        cls = current().policy.fleet.get("gpu_classes", {}).get(body.gpu_class) or {}
        if body.runtime is not None and cls:
            try:
                runtimes.check(body.model_dump(), str(cls.get("vendor", "nvidia")))
            except runtimes.UnsupportedRuntime as exc:
                raise HTTPException(422, f"runtime: {exc}") from exc
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
        asked = {"deployment": name, "target_replicas": body.target_replicas}
        return _request(tenant, "scale", payload, caller, asked=asked)

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
        _decide_or_refuse(
            {"kind": "deploy_model", "tenant": tenant, "actor": caller.actor, "usage": usage,
             "deploy_model": payload}
        )  # fmt: skip
        needed = body.gpus or int(payload["gpus_per_replica"]) * int(payload["replicas"])
        workflow_id = f"capacity-{tenant}-{uuid.uuid4().hex[:12]}"
        answers.start(
            workflow_id, workflows.capacity_workflow, tenant, payload, needed, body.queue, caller.actor
        )
        return answers.answer(workflow_id)

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
        # Dedicated pools waiting for capacity plan again too (capacity may have been added).
        woken = pools.wake(f"capacity retry {workflow_id}")
        return JSONResponse({"workflow_id": workflow_id, "pool_requests_woken": woken}, status_code=202)

    @app.get("/v1/capacity")
    def capacity_view(caller: Caller) -> dict[str, Any]:
        """Admin: per GPU class capacity, GPUs running deployments hold, free; per region, class
        and pool kind (shared, dedicated with owner) the fleet's pools; the queue in retry order.
        Tenant: what its policy lets it use per region, class and pool kind, its entitlements,
        usage and queued deployments; never another tenant's dedicated pool."""
        rt = current()
        fleet, deps = rt.policy.fleet, rt.store.deployments()
        if not caller.is_admin:
            return inventory.tenant_view(_own(caller, str(caller.tenant)), fleet, deps)
        reported = rt.store.reported_capacity()
        classes = sorted(set(capacity.inventory(fleet)) | set(reported))
        return {
            "classes": [capacity.headroom(c, fleet, reported, deps) for c in classes],
            "capacity": inventory.by_region(inventory.pools(fleet), with_owner=True),
            "pools": inventory.pools(fleet),
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

    @app.get("/v1/effects")
    def effects(caller: Caller) -> dict[str, Any]:
        """What the dry-run adapter would have applied (`would_apply`, `would_delete`), in order.
        With the Kubernetes adapter nothing is recorded here: the cluster holds the objects."""
        _admin(caller)
        adapter = current().adapter
        if isinstance(adapter, DryRunAdapter):
            note = "nothing was applied to a cluster; these are the effects a cluster would have seen"
            return {"mode": adapter.mode, "note": note, "effects": adapter.effects()}
        note = "the worker applies to a cluster by server-side apply; effects are not recorded"
        return {"mode": adapter.mode, "note": note, "effects": []}

    @app.post("/v1/tenants/{tenant}/offboard", status_code=202)
    def offboard(tenant: str, body: OffboardRequest, caller: Caller) -> JSONResponse:
        record = _own(caller, tenant)
        if record["state"] not in ("active", "suspended"):
            raise HTTPException(
                409, f"tenant {tenant!r} is {record['state']}; only active or suspended tenants offboard"
            )
        running = [d for d in current().store.deployments(tenant) if d["state"] == "running"]
        _decide_or_refuse(
            {
                "kind": "offboard_tenant",
                "tenant": tenant,
                "actor": caller.actor,
                "offboard_tenant": {"active_workloads": len(running), "reason": body.reason},
            }
        )
        workflow_id = f"offboard-{tenant}"
        answers.start(workflow_id, workflows.offboard_workflow, tenant, caller.actor, body.reason)
        return answers.answer(workflow_id)

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
            # The request's latest decision (outcome, reasons, decision id, bundle revision) and
            # where it stands; null until the workflow has decided.
            "decision": answers.decision(workflow_id),
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

    @app.get("/v1/audit")
    def audit_trail(caller: Caller, tenant: str | None = None) -> PlainTextResponse:
        if not caller.is_admin:
            tenant = caller.tenant
        rt = current()
        text = (
            anchor.export_jsonl(rt.db, tenant, rt.certificate_key)
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
        trusted = rt.anchor.trusted or rt.anchor.key.public_key()
        report = anchor.verify(rt.db, rt.anchor.sink, trusted)
        if rt.anchor.frozen:
            report.notes.append(f"the worker no longer advances the anchor: {rt.anchor.frozen}")
        if rt.anchor.trusted is None:
            report.notes.append(
                "a self-check with the worker's own key: `pdp lifecycle audit-verify` with a trusted key "
                "and checkpoints held outside the state folder is the check that holds against its writers"
            )
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

"""Capacity: the scheduler's (or an operator's) report of a deployment it cannot place, the retry
of queued deployments, the capacity view (admin: the fleet; a tenant: what its policy lets it use)
and the dry-run adapter's effects."""

from __future__ import annotations

import uuid
from typing import Any

from dbos import DBOS, SetWorkflowID
from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse

from pdp.lifecycle import workflows
from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import capacity, inventory, pools
from pdp.product.api import accepted
from pdp.product.api.guards import active_tenant, decide_or_refuse, own_tenant
from pdp.product.api.models import CapacityExhaustion, CapacityRetry
from pdp.product.auth import Caller, require_admin
from pdp.substrate.dryrun import DryRunAdapter

router = APIRouter(tags=["capacity"])


@router.post("/v1/capacity/exhaustion", status_code=202)
def exhaustion(body: CapacityExhaustion, caller: Caller) -> JSONResponse:
    """The scheduler (or an operator) reports a deployment it cannot place for lack of GPUs:
    preempt lower tiers if the PDP allows it, else queue or reject the request."""
    require_admin(caller)
    tenant = body.tenant
    active_tenant(caller, tenant)
    payload = {k: v for k, v in body.deployment.model_dump().items() if v is not None}
    if any(d["name"] == payload["deployment"] for d in current().store.deployments(tenant)):
        raise HTTPException(409, f"deployment {payload['deployment']!r} already exists")
    usage = current().store.usage(tenant)
    decide_or_refuse(
        {"kind": "deploy_model", "tenant": tenant, "actor": caller.actor, "usage": usage,
         "deploy_model": payload}
    )  # fmt: skip
    needed = body.gpus or int(payload["gpus_per_replica"]) * int(payload["replicas"])
    workflow_id = f"capacity-{tenant}-{uuid.uuid4().hex[:12]}"
    accepted.start(
        workflow_id, workflows.capacity_workflow, tenant, payload, needed, body.queue, caller.actor
    )
    return accepted.answer(workflow_id)


@router.post("/v1/capacity/retry", status_code=202)
def capacity_retry(body: CapacityRetry, caller: Caller) -> JSONResponse:
    """Retry the queued deployments now (capacity returned), optionally with the scheduler's
    report of free GPUs per class."""
    require_admin(caller)
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


@router.get("/v1/capacity")
def capacity_view(caller: Caller) -> dict[str, Any]:
    """Admin: per GPU class capacity, GPUs running deployments hold, free; per region, class
    and pool kind (shared, dedicated with owner) the fleet's pools; the queue in retry order.
    Tenant: what its policy lets it use per region, class and pool kind, its entitlements,
    usage and queued deployments; never another tenant's dedicated pool."""
    rt = current()
    fleet, deps = rt.policy.fleet, rt.store.deployments()
    if not caller.is_admin:
        return inventory.tenant_view(own_tenant(caller, str(caller.tenant)), fleet, deps)
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


@router.get("/v1/effects")
def effects(caller: Caller) -> dict[str, Any]:
    """What the dry-run adapter would have applied (`would_apply`, `would_delete`), in order.
    With the Kubernetes adapter nothing is recorded here: the cluster holds the objects."""
    require_admin(caller)
    adapter = current().adapter
    if isinstance(adapter, DryRunAdapter):
        note = "nothing was applied to a cluster; these are the effects a cluster would have seen"
        return {"mode": adapter.mode, "note": note, "effects": adapter.effects()}
    note = "the worker applies to a cluster by server-side apply; effects are not recorded"
    return {"mode": adapter.mode, "note": note, "effects": []}

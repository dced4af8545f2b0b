"""The tenant's serialization: where changes are decided and applied.

Every change of a tenant's resources (deploy, scale, batch size, GPU sharing, quotas, SLA, a
placement from capacity exhaustion or the queue retry, the start of offboarding) runs as a short
workflow on the `tenant-ops` queue, partitioned by tenant with one workflow per partition at a
time, across workers. It decides against the store's usage as it is then and applies what was
decided before the next change of the tenant starts: two changes cannot both spend the same
entitlement, and no decision works from figures another change has made stale.

Nothing waits for a human in there: a change that needs approval ends, the request waits for the
approval in its own workflow (pdp/lifecycle/workflows/approvals.py), then runs the change again,
which decides again against the usage then, covered by what the approval granted
(pdp/lifecycle/services/grants.py) or asking again with the new figures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dbos import DBOS, SetEnqueueOptions, SetWorkflowID

from pdp.lifecycle.workflows import approvals
from pdp.lifecycle.workflows.steps import record_step, request_id

QUEUE = "tenant-ops"
# How often a request polls for the result of its change (the queue itself polls as registered).
RESULT_POLL = 0.1


def in_partition(
    tenant: str, workflow_id: str, func: Callable[..., dict[str, Any]], *args: Any
) -> dict[str, Any]:
    """Run workflow `func(*args)` in the tenant's serialization and wait for its result. From a
    workflow, the enqueue and the result are checkpointed: after a crash the same change is awaited
    (or found done), not started twice."""
    queue = DBOS.retrieve_queue(QUEUE)
    if queue is None:
        raise RuntimeError(f"the {QUEUE} queue is not registered (start the worker)")
    with SetWorkflowID(workflow_id), SetEnqueueOptions(queue_partition_key=tenant):
        handle = queue.enqueue(func, *args)
    result: dict[str, Any] = handle.get_result(polling_interval_sec=RESULT_POLL)
    return result


def negotiate(tenant: str, kind: str, change: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run `change(*args, grant, request)` in the tenant's serialization until it is decided for
    good: applied (or refused) there, or, when it needs approval, after the approval is answered.

    The change returns {"status", "decision", ...}; status "needs_approval" carries the grant its
    approval would give ("grant"). Each outcome is published as the request's decision."""
    request = request_id()
    grant: dict[str, Any] = {}
    attempt = 0
    while True:
        attempt += 1
        result = in_partition(tenant, f"{request}:change-{attempt}", change, *args, grant, request)
        if result["status"] != "needs_approval":
            approvals.publish(str(result["status"]), result.get("decision"), **_extra(result))
            return result
        answer = approvals.await_approval(tenant, kind, result["decision"], result["grant"])
        if answer != "approved":
            status = "superseded" if answer == "superseded" else "rejected"
            detail = {"kind": kind, "approval": answer}
            record_step(tenant, f"request.{status}", detail, result["decision"])
            approvals.publish(status, result["decision"], approval=answer)
            return {"status": status, "approval": answer, "decision": result["decision"]}
        grant = dict(result["grant"])


def _extra(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("reason",) if k in result}

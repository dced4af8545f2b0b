"""SLA changes (`change_sla`): a new tier and/or isolation, every running deployment re-placed
under it.

Decided and applied inside the tenant's serialization (pdp/lifecycle/workflows/serial.py): a spot
downgrade is refused above the entitlement, so it must see the usage no concurrent request is
changing. An approval (raising the tier, moving to dedicated isolation) is awaited outside it.
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS

from pdp.lifecycle import test_faults
from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import realize, replacement
from pdp.lifecycle.states import DeploymentState
from pdp.lifecycle.workflows.decide import decide_change_step
from pdp.lifecycle.workflows.serial import negotiate
from pdp.lifecycle.workflows.steps import (
    RETRY,
    begin,
    key,
    record_step,
    render_step,
    replace_step,
    request_id,
    tenant_step,
    verify_step,
    verify_workloads_step,
    workloads_step,
)
from pdp.substrate import tenant_objects


@DBOS.step()
def running_step(tenant: str) -> list[str]:
    return [d["name"] for d in current().store.deployments(tenant) if d["state"] == DeploymentState.RUNNING]


@DBOS.step(**RETRY)
def policy_step(
    tenant: str, policy: dict[str, Any], previous: dict[str, Any], decision: dict[str, Any], note: str
) -> str:
    """The tenant's policy objects re-applied, the policy published and recorded; the revision."""
    test_faults.at_step(f"apply:policy:{note}")
    return realize.apply_policy(
        current(),
        tenant,
        policy,
        previous,
        decision,
        event_key=f"{key()}:policy:{note}",
        workflow_id=request_id(),
    )


@DBOS.step(**RETRY)
def restore_workloads_step(
    tenant: str, before: dict[str, dict[str, Any]], decision: dict[str, Any]
) -> list[str]:
    test_faults.at_step("restore-workloads")
    return replacement.restore_workloads(
        current(), tenant, before, decision, event_key=f"{key()}:restored", workflow_id=request_id()
    )


@DBOS.workflow()
def sla_change_workflow(
    tenant: str, change: dict[str, Any], actor: str, grant: dict[str, Any], request_of: str
) -> dict[str, Any]:
    """Inside the tenant's serialization: decide, update and publish the policy, re-apply the
    objects that follow it, re-place every running deployment under the new policy, verify. A
    step that still fails after its retries puts the previous policy, objects and placements back."""
    begin(request_of)
    verdict = decide_change_step(tenant, "change_sla", change, actor, grant)
    if verdict["status"] != "allowed":
        out = {k: v for k, v in verdict.items() if k in ("status", "decision", "grant", "reason")}
        if verdict["status"] == "denied":
            out["reasons"] = [r["code"] for r in verdict["decision"]["reasons"]]
        return out
    decision = verdict["decision"]
    previous = dict(tenant_step(tenant)["policy"])
    policy = {**previous, **change}
    before = workloads_step(tenant)
    replaced: list[dict[str, Any]] = []
    stage = "policy"
    try:
        revision = policy_step(tenant, policy, previous, decision, "changed")
        for name in running_step(tenant):
            stage = f"replace:{name}"
            replaced.append(replace_step(tenant, name, "change_sla", actor, None, True))
        stage = "verify"
        rendered = render_step(policy)
        now = workloads_step(tenant)
        verify_step(tenant, [o for g in tenant_objects.POLICY_GROUPS for o in rendered[g]], True, decision)
        verify_workloads_step(tenant, now, decision)
    except Exception as exc:
        # Saga: the previous policy and objects, and every workload placed as it was.
        policy_step(tenant, previous, policy, decision, "restored")
        restored = restore_workloads_step(tenant, before, decision)
        failure = {"failed_at": stage, "error": str(exc), "restored": restored}
        record_step(tenant, "sla.compensated", failure, decision)
        return {"status": "failed", **failure, "decision": decision}
    summary = {"tier": policy.get("tier"), "isolation": policy.get("isolation"), "bundle_revision": revision}
    record_step(tenant, "sla.changed", {**summary, "replaced": replaced}, decision)
    return {"status": "applied", **summary, "replaced": replaced, "decision": decision}


@DBOS.workflow()
def sla_workflow(tenant: str, change: dict[str, Any], actor: str) -> dict[str, Any]:
    """Change the tenant's tier and/or isolation (approval when the policy asks)."""
    begin()
    return negotiate(tenant, "change_sla", sla_change_workflow, tenant, change, actor)

"""Onboarding: decide `create_tenant` (approval when the policy asks), provision the tenant's
objects one group at a time, verify them, publish its policy into the bundle, activate.

A provisioning step that still fails after its retries runs the compensations of the groups
before it, newest first (saga), and the tenant ends `failed`. The tenant is `pending` until then,
so none of its requests run: onboarding needs no place in the tenant's serialization, and its
approval is awaited in this workflow.
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS

from pdp.lifecycle.services import pools
from pdp.lifecycle.states import TenantState
from pdp.lifecycle.workflows import approvals
from pdp.lifecycle.workflows.steps import (
    apply_group_step,
    begin,
    clusters_step,
    decide_step,
    delete_group_step,
    publish_step,
    render_step,
    transition_step,
    verify_step,
)
from pdp.substrate import tenant_objects
from pdp.substrate.kubernetes import objects


def _approval(name: str, decision: dict[str, Any]) -> str:
    """The answer to an onboarding the policy wants approved ("approved", or how it was
    refused). The reasons say what is approved: DEDICATED_POOL_PROVISIONING, a dedicated pool for
    the tenant. What an approved reason needs done before provisioning (the pool carved out)
    belongs right after the answer, here."""
    return approvals.await_approval(name, "create_tenant", decision)


@DBOS.workflow()
def onboard_workflow(policy: dict[str, Any], actor: str) -> dict[str, Any]:
    begin()
    name = str(policy["name"])
    intent = {"kind": "create_tenant", "tenant": name, "actor": actor, "create_tenant": {"policy": policy}}
    decision = decide_step(intent, False)
    if decision["outcome"] == "DENY":
        transition_step(name, TenantState.FAILED, decision, "denied by policy")
        approvals.publish("denied", decision)
        return {"status": "denied", "decision": decision}
    if decision["outcome"] == "NEEDS_APPROVAL":
        answer = _approval(name, decision)
        if answer != "approved":
            transition_step(name, TenantState.FAILED, decision, f"approval {answer}")
            approvals.publish("rejected", decision, approval=answer)
            return {"status": "rejected", "approval": answer, "decision": decision}
    approvals.publish("provisioning", decision)
    transition_step(name, TenantState.PROVISIONING, decision)
    rendered = render_step(policy)
    done: list[str] = []
    clusters: list[str] = []
    try:
        # Only the clusters its policy allows (the decision's eligible clusters).
        clusters = clusters_step(name, decision)
        # Shared by the tier's tenants, so applied (idempotently) but never compensated.
        apply_group_step(name, "tier catalog", objects.tier_catalog(), decision, clusters)
        for group in tenant_objects.GROUPS:
            apply_group_step(name, group, rendered[group], decision, clusters)
            done.append(group)
        verify_step(name, [o for g in tenant_objects.GROUPS for o in rendered[g]], True, decision, clusters)
        publish_step(name, policy, decision)
        # An approved DEDICATED_POOL_PROVISIONING: carve the pool (waits while there is no capacity).
        pools.provision(name, policy, decision, actor)
    except Exception as exc:
        # Saga: undo what was applied, newest first, then mark the tenant failed.
        pools.compensate(name, f"compensation: {exc}", decision)
        for group in reversed(done):
            delete_group_step(name, group, rendered[group], f"compensation: {exc}", decision, clusters)
        transition_step(name, TenantState.FAILED, decision, f"provisioning failed: {exc}")
        approvals.publish("failed", decision, error=str(exc))
        return {"status": "failed", "error": str(exc), "compensated": list(reversed(done))}
    transition_step(name, TenantState.ACTIVE, decision)
    approvals.publish("active", decision)
    return {"status": "active", "decision": decision}

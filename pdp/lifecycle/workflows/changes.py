"""Tenant requests: deploy, scale, batch size, GPU sharing, quotas (and the decision step the SLA
change shares).

A request is its own workflow (`request_workflow`); the change it asks for is decided and applied
by `change_workflow` inside the tenant's serialization (pdp/lifecycle/workflows/serial.py). The
decision is made there from the store as it is then: the tenant's usage, and for a scale the
replicas the deployment holds, never figures captured when the request arrived.
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS

from pdp.lifecycle import test_faults
from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import cluster_reach, realize
from pdp.lifecycle.services.substrates import render_tenant
from pdp.lifecycle.states import DeploymentState
from pdp.lifecycle.workflows.decide import ON_DEPLOYMENT, decide_change_step
from pdp.lifecycle.workflows.queue_retry import retry_later
from pdp.lifecycle.workflows.serial import negotiate
from pdp.lifecycle.workflows.steps import RETRY, begin, key, links, record_step, replace_step, request_id
from pdp.substrate.base import Adapter
from pdp.substrate.kubernetes import objects


def _unapplied(verdict: dict[str, Any]) -> dict[str, Any]:
    """What a change that was not applied returns."""
    out = {k: v for k, v in verdict.items() if k in ("status", "decision", "grant", "reason")}
    if verdict["status"] == "denied":
        out["reasons"] = [r["code"] for r in verdict["decision"]["reasons"]]
    return out


@DBOS.step(**RETRY)
def apply_request_step(
    tenant: str, kind: str, payload: dict[str, Any], decision: dict[str, Any]
) -> dict[str, Any]:
    """Apply an allowed (or approved) request; returns what changed."""
    test_faults.at_step(f"apply:{kind}")
    rt = current()
    event_key = f"{key()}:applied:{kind}"
    ids = {"workflow_id": request_id(), **links(decision)}
    if kind == "deploy_model":
        rt.store.put_deployment(
            tenant, payload["deployment"], DeploymentState.RUNNING, payload, event_key=event_key, **ids
        )
        obj = realize.apply_workload(
            rt, tenant, payload, decision, event_key=f"{event_key}:workload", workflow_id=request_id()
        )
        return {
            "deployment": payload["deployment"],
            "state": DeploymentState.RUNNING,
            "object": objects.key(obj),
        }
    existing = {d["name"]: d for d in rt.store.deployments(tenant)}
    if kind in ON_DEPLOYMENT:
        dep = existing[payload["deployment"]]
        spec = dict(dep["spec"])
        if kind == "scale":
            spec["replicas"] = payload["target_replicas"]
        else:
            spec["batch_size"] = payload["batch_size"]
        state = rt.store.put_spec(tenant, dep["name"], spec, event_key=event_key, **ids)
        realize.reapply_workload(
            rt, tenant, spec, state, decision, event_key=f"{event_key}:workload", workflow_id=request_id()
        )
        return {"deployment": dep["name"], "spec": spec}
    if kind == "request_gpu_sharing":
        isolation = decision.get("constraints", {}).get("isolation", {})
        # Shared GPUs live in other pools than whole ones: the running deployments of the class
        # (of every class when none is named) are re-placed by the workflow, one step each.
        moving = [
            d["name"]
            for d in existing.values()
            if d["state"] == DeploymentState.RUNNING
            and d["spec"].get("gpu_class") == payload.get("gpu_class", d["spec"].get("gpu_class"))
            and d["spec"].get("sharing", "none") != payload["mode"]
        ]
        rt.store.record(
            event_key,
            event="tenant.sharing_requested",
            tenant=tenant,
            detail={"sharing_mode": payload["mode"], "isolation": isolation, "to_replace": moving},
            **ids,
        )
        return {"sharing_mode": payload["mode"], "to_replace": moving}
    if kind == "update_quotas":
        policy = {**rt.store.tenant(tenant)["policy"], "entitlements": payload["entitlements"]}
        rendered = render_tenant(rt, policy)
        quota = rendered["quota"] + rendered["kueue"]

        def apply(adapter: Adapter) -> None:
            for obj in quota:
                adapter.apply(obj)

        for cluster in cluster_reach.of_tenant(rt, tenant):
            cluster_reach.reach(
                rt,
                cluster,
                "apply quotas",
                apply,
                tenant=tenant,
                event_key=event_key,
                workflow_id=request_id(),
                decision_id=ids["decision_id"],
            )
        revision = rt.policy.publish(policy)
        rt.store.update_policy(
            tenant, policy, event_key=event_key, detail={"entitlements": payload["entitlements"]}, **ids
        )
        return {"entitlements": payload["entitlements"], "bundle_revision": revision}
    raise ValueError(f"unsupported request kind {kind!r}")


@DBOS.workflow()
def change_workflow(
    tenant: str, kind: str, request: dict[str, Any], actor: str, grant: dict[str, Any], request_of: str
) -> dict[str, Any]:
    """One attempt at a request, inside the tenant's serialization: decide, then apply."""
    begin(request_of)
    verdict = decide_change_step(tenant, kind, request, actor, grant)
    if verdict["status"] != "allowed":
        if verdict["status"] == "denied" and kind == "deploy_model":
            record_step(
                tenant, "deployment.rejected", {"deployment": request["deployment"]}, verdict["decision"]
            )
        return _unapplied(verdict)
    decision, payload = verdict["decision"], verdict["payload"]
    changed = apply_request_step(tenant, kind, payload, decision)
    if kind == "request_gpu_sharing":
        changed["replaced"] = [
            replace_step(tenant, name, kind, actor, str(payload["mode"]), False)
            for name in changed["to_replace"]
        ]
    approved = {"approved_under": verdict["grant"]} if verdict["grant"] else {}
    record_step(tenant, "request.completed", {"kind": kind, "changed": changed, **approved}, decision)
    if kind == "scale" and int(payload["target_replicas"]) < int(payload["current_replicas"]):
        retry_later(f"scale-down of {tenant}/{payload['deployment']}")
    return {"status": "applied", "changed": changed, "decision": decision, **approved}


@DBOS.workflow()
def request_workflow(tenant: str, kind: str, payload: dict[str, Any], actor: str) -> dict[str, Any]:
    """A tenant request, decided and applied in the tenant's serialization; an approval, when the
    policy asks for one, is awaited here, outside it."""
    begin()
    return negotiate(tenant, kind, change_workflow, tenant, kind, payload, actor)

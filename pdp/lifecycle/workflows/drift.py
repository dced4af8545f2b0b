"""Remediating a cluster drift finding (issue 15): a running GPU pod the current revision would
refuse or place on another node (pdp/lifecycle/services/drift.py), remediated as its tenant's tier says,
decided as a `remediate_drift` intent (policies/gpupaas/drift), admin-triggered:

1. decide: whether a placement the revision allows exists (another node the PDP would place the
   pod on; for a lifecycle deployment refused as it is, a fresh placement decision), then the
   remediation itself, recorded like every decision (with its revision and reason codes);
2. notify: the decision's warnings, the notice the tenant gets, in its own audit trail
   (`drift.notified`); an enterprise workload without an admin's approval stops here;
3. grace: a durable sleep of the decision's grace seconds (a worker that restarts sleeps only what
   is left);
4. re-check: the pod decided again under the revision in force now; gone, replaced, or allowed
   where it runs cancels the remediation (`drift.cancelled`): it never acts on a stale finding;
5. act: `replace` (a lifecycle deployment placed afresh and re-applied if its placement moved,
   then the pod evicted so the scheduler places the next one inside the policy's constraints),
   `evict` (the pod evicted through the Eviction API, its disruption budget respected), or
   `scale_to_zero` (the deployment scaled to 0 through the tenant's serialization, as a tenant's
   own scale request is);
6. audit: `drift.remediated` (or `drift.failed`) with what was done.

Every step is checkpointed and its records keyed by workflow and step; the eviction names the
pod's uid, so a step re-run after a kill -9 never evicts the pod that replaced it. Each effect
(notice, re-placement, eviction, scale, audit record) happens once.
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS

from pdp.lifecycle import test_faults
from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import drift, realize, replacement
from pdp.lifecycle.workflows.changes import change_workflow
from pdp.lifecycle.workflows.serial import in_partition
from pdp.lifecycle.workflows.steps import RETRY, begin, intent, key, record_decision, record_step, request_id
from pdp.point import DecideOptions
from pdp.substrate.kubernetes import workload
from pdp.substrate.kubernetes.enforcement import pod_audit as audit

_OPTIONS = DecideOptions(timeout=10.0, record=False, entry_point="lifecycle")


def _read_pod(finding: dict[str, Any]) -> tuple[audit.Snapshot, dict[str, Any] | None]:
    """The cluster as it is now, and the finding's pod in it (None: gone, or replaced by another
    pod of the same name)."""
    seen = audit.snapshot(drift.api_of(current(), finding["cluster"]), drift.LIST_TIMEOUT)
    for pod in seen.pods:
        meta = pod["metadata"]
        if (meta["namespace"], meta["name"]) == (finding["namespace"], finding["pod"]):
            return seen, pod if str(meta.get("uid") or "") == finding["uid"] else None
    return seen, None


def _managed(tenant: str, name: str) -> dict[str, Any] | None:
    """The tenant's running lifecycle deployment of that name."""
    if not name:
        return None
    return realize.running_deployment(current(), tenant, name)


def _replaceable(tenant: str, finding: dict[str, Any], dep: dict[str, Any] | None) -> dict[str, Any]:
    """Where the revision would have the workload instead: other nodes of its cluster it would place
    the pod on, or, for a lifecycle deployment refused as it is, a fresh placement it allows."""
    rt = current()
    seen, pod = _read_pod(finding)
    nodes = audit.eligible_elsewhere(pod, seen, rt.policy.stack.point, _OPTIONS) if pod else []
    if nodes:
        return {"replaceable": True, "nodes": nodes[:20]}
    if dep is not None and finding["finding"] == audit.REFUSED:
        asked = workload.deploy_intent(tenant, dep["spec"], rt.store.usage(tenant), "drift")
        placed = rt.policy.decide(asked)
        return {"replaceable": placed["outcome"] == "ALLOW", "placement_decision_id": placed["decision_id"]}
    return {"replaceable": False}


@DBOS.step(**RETRY)
def drift_decision_step(tenant: str, finding: dict[str, Any], approved: bool, actor: str) -> dict[str, Any]:
    """The remediate_drift intent of the finding as the cluster and the store have it now,
    decided and recorded."""
    test_faults.at_step("drift:decide")
    rt = current()
    dep = _managed(tenant, finding.get("deployment", ""))
    where = _replaceable(tenant, finding, dep)
    payload: dict[str, Any] = {
        k: finding[k] for k in ("namespace", "pod", "node", "finding") if finding.get(k)
    }
    payload["replaceable"] = where["replaceable"]
    if finding.get("cluster"):
        payload["cluster"] = finding["cluster"]
    if dep is not None:
        payload["deployment"] = dep["name"]
    if approved:
        payload["approved"] = True
    asked = intent(tenant, "remediate_drift", payload, actor)
    decision = rt.policy.decide(asked)
    record_decision(asked, decision, finding=finding["id"], elsewhere=where)
    return {"decision": decision, "payload": payload}


@DBOS.step(**RETRY)
def drift_recheck_step(finding: dict[str, Any]) -> dict[str, Any]:
    """The finding decided again under the revision in force now: {"cleared": why} or {"finding"}."""
    test_faults.at_step("drift:recheck")
    seen, pod = _read_pod(finding)
    if pod is None:
        return {"cleared": "the pod is gone (deleted, or replaced by another of the same name)"}
    if pod["spec"]["nodeName"] != finding["node"]:
        return {"cleared": f"the pod runs on {pod['spec']['nodeName']} now"}
    _, found = audit.check_pod(pod, seen, current().policy.stack.point, _OPTIONS)
    if found is None:
        return {"cleared": "the revision in force allows the pod where it runs"}
    return {"finding": found.as_json()}


@DBOS.step(**RETRY)
def drift_replace_step(tenant: str, deployment: str, fid: str, actor: str) -> dict[str, Any]:
    """A fresh placement decision for the lifecycle deployment, its object re-applied if it moved."""
    test_faults.at_step("drift:replace")
    return replacement.replace(
        current(), tenant, deployment, actor=actor, cause=f"drift {fid}", sharing=None, strict=False,
        event_key=f"{key()}:replaced", workflow_id=request_id(),
    )  # fmt: skip


@DBOS.step(**RETRY)
def drift_evict_step(tenant: str, finding: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    """The pod evicted (Eviction API, preconditioned on its uid: never the pod that replaced it),
    recorded with the remediation's decision (its id and revision)."""
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException

    test_faults.at_step("drift:evict")
    core = k8s.CoreV1Api(drift.api_of(current(), finding["cluster"]))
    body = k8s.V1Eviction(
        metadata=k8s.V1ObjectMeta(name=finding["pod"], namespace=finding["namespace"]),
        delete_options=k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid=finding["uid"])),
    )
    try:
        core.create_namespaced_pod_eviction(
            finding["pod"], finding["namespace"], body, _request_timeout=drift.LIST_TIMEOUT
        )
        outcome = "evicted"
    except ApiException as exc:
        if exc.status not in (404, 409):  # 429: a disruption budget refuses it now; retried
            raise
        outcome = "gone"  # already gone, or another pod holds the name: nothing of ours to evict
    test_faults.at_step("drift:evicted")  # done, not yet recorded: a re-run finds the pod on its way out
    detail = {"finding": finding["id"], "namespace": finding["namespace"], "pod": finding["pod"],
              "node": finding["node"], "cluster": finding["cluster"], "eviction": outcome}  # fmt: skip
    record_step(tenant, "drift.evicted", detail, decision)
    return detail


def _cancelled(tenant: str, detail: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
    record_step(tenant, "drift.cancelled", detail, decision)
    return {"status": "cancelled", **detail, "decision_id": decision["decision_id"]}


@DBOS.workflow()
def drift_remediation_workflow(
    tenant: str, finding: dict[str, Any], approved: bool, actor: str
) -> dict[str, Any]:
    """Decide, notify, wait the grace, re-check, act, audit (module docstring)."""
    begin()
    fid = finding["id"]
    verdict = drift_decision_step(tenant, finding, approved, actor)
    decision, payload = verdict["decision"], verdict["payload"]
    if decision["outcome"] != "ALLOW":
        codes = [r["code"] for r in decision["reasons"]]
        record_step(tenant, "drift.refused", {"finding": fid, "reasons": codes}, decision)
        return {"status": "denied", "finding": fid, "reasons": codes, "decision_id": decision["decision_id"]}
    plan = dict(decision["constraints"]["drift"])
    notice = {
        "finding": fid,
        "kind": payload["finding"],
        **{k: payload[k] for k in ("namespace", "pod", "node", "replaceable")},
        "deployment": payload.get("deployment", ""),
        **plan,
        "notice": [w["message"] for w in decision["warnings"]],
        "codes": [w["code"] for w in decision["warnings"]],
        "revision": decision.get("bundle_revision", ""),
    }
    record_step(tenant, "drift.notified", notice, decision)
    if plan["action"] == "notify":
        return {"status": "notified", **notice, "decision_id": decision["decision_id"]}
    DBOS.sleep(float(plan["grace_seconds"]))
    seen = drift_recheck_step(finding)
    if "cleared" in seen:
        return _cancelled(tenant, {"finding": fid, "reason": seen["cleared"]}, decision)
    action = plan["action"]
    outcome: dict[str, Any] = {"finding": fid, "action": action, "revision": seen["finding"]["revision"]}
    ok = True
    if action == "replace":
        if payload.get("deployment"):
            outcome["replacement"] = drift_replace_step(tenant, payload["deployment"], fid, actor)
        outcome["eviction"] = drift_evict_step(tenant, finding, decision)["eviction"]
    elif action == "evict":
        outcome["eviction"] = drift_evict_step(tenant, finding, decision)["eviction"]
    elif action == "scale_to_zero":
        result = in_partition(
            tenant, f"{request_id()}:scale", change_workflow, tenant, "scale",
            {"deployment": payload["deployment"], "target_replicas": 0}, actor, {}, request_id(),
        )  # fmt: skip
        outcome["scale"] = result.get("status")
        outcome["scale_decision_id"] = (result.get("decision") or {}).get("decision_id", "")
        ok = result.get("status") == "applied"
    event = "drift.remediated" if ok else "drift.failed"
    record_step(tenant, event, outcome, decision)
    return {"status": "remediated" if ok else "failed", **outcome, "decision_id": decision["decision_id"]}

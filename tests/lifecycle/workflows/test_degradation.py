"""The degradation policy (policies/gpupaas/degradation) drives incident response when the capacity
left is short: on a real worker (real OPA, DBOS on SQLite, the dry-run adapter), a node of the shared
H100 pool fails while the scheduler reports no free H100; the policy's plan preempts spot first
(larger first) to make room for the enterprise deployment the fault hit, the preempt intent refuses
the standard tenant that forbids preemption (its deployment is re-placed instead, after the
enterprise one), and the degrade decision is in the incident's trail."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.lifecycle.harness import (
    Worker,
    audit_records,
    deploy,
    h100_deployment,
    incident_in_state,
    onboard,
    tenant_doc,
)

H100 = "H100-80GB"
NODE = "eu-shared-1"  # 8 H100s in the example fleet's eu-h100-shared pool
ACME = tenant_doc("acme-eu", "acmed", ["acmed-prod"], isolation="shared", entitlements={H100: 32})
GLOBEX = tenant_doc("globex", "globexd", ["globexd-ml"], entitlements={H100: 32})
INITECH = tenant_doc("initech-spot", "initechd", ["initechd-batch"], entitlements={H100: 32})


def _wait(worker: Worker, workflow_id: str) -> dict[str, Any]:
    wf = worker.wait_workflow(workflow_id)
    assert wf["status"] == "SUCCESS", wf
    return wf


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = Worker(tmp_path_factory.mktemp("degradation"), capacity_retry_schedule="")
    w.start()
    try:
        for doc in (ACME, GLOBEX, INITECH):
            onboard(w, doc)
        for tenant, dep in (
            ("initechd", h100_deployment("small", 1)),
            ("initechd", h100_deployment("batch", 2)),
            ("acmed", h100_deployment("chat", 2)),
            ("globexd", h100_deployment("train", 1)),
        ):
            deploy(w, tenant, dep)
        yield w
    finally:
        w.stop()


def _states(worker: Worker) -> dict[str, str]:
    with worker.client() as c:
        return {
            f"{t}/{d['name']}": d["state"]
            for t in ("acmed", "globexd", "initechd")
            for d in c.get(f"/v1/tenants/{t}/deployments").json()
        }


@pytest.mark.timeout(600)
def test_short_capacity_after_a_node_fault_preempts_spot_first_as_the_policy_plans(worker: Worker) -> None:
    # The scheduler's word: no H100 is free, so losing the node's 8 leaves the fleet 8 short.
    with worker.client() as c:
        r = c.post("/v1/capacity/retry", json={"free_gpus": {H100: 0}})
        assert r.status_code == 202, r.text
    _wait(worker, r.json()["workflow_id"])
    report = {
        "node": NODE,
        "cause": "node condition Ready=False",
        "pods": [
            {"namespace": "acmed-prod", "pod": "chat-7d9c8b6f5-x2k4q"},
            {"namespace": "globexd-ml", "pod": "train-5f6d7c8b9-qw8rt"},
        ],
    }
    with worker.client() as c:
        r = c.post("/v1/incidents", json=report)
        assert r.status_code == 202, r.text
    incident = r.json()["incident"]
    view = incident_in_state(worker, incident, "awaiting_resolution")

    # The plan: spot first, the larger first; then standard globexd (no minimum: preempted whole),
    # which the preempt intent refuses (globex forbids preemption): only initechd's are taken.
    [plan] = view["degraded"]
    assert plan["gpu_class"] == H100 and plan["short_gpus"] == 8, plan
    assert plan["outcome"] == "DENY"
    assert [(v["tenant"], v["workload"], v["action"], v["gpus"]) for v in plan["taken"]] == [
        ("initechd", "batch", "preempt", 2),
        ("initechd", "small", "preempt", 1),
    ]
    # Re-placed in the policy's order: enterprise, then the standard deployment it could not take.
    assert [(a["tenant"], a["deployment"]) for a in view["affected"]] == [
        ("acmed", "chat"),
        ("globexd", "train"),
    ]
    assert list(view["tenants"]) == ["acmed", "globexd"]
    states = _states(worker)
    assert states["initechd/batch"] == "queued" and states["initechd/small"] == "queued", states
    assert states["acmed/chat"] == "running" and states["globexd/train"] == "running", states

    with worker.client() as c:
        trail = audit_records(c.get("/v1/audit").text)
    mine = [r for r in trail if r["workflow_id"] == incident and r["event"] == "decision"]
    [degrade] = [r for r in mine if r["detail"]["kind"] == "degrade"]
    assert (
        degrade["decision_id"] == plan["decision_id"] and degrade["detail"]["cause"] == f"incident {incident}"
    )
    assert degrade["detail"]["payload"]["for_tier"] == "enterprise"
    moves = [
        (r["detail"]["deployment"], r["detail"]["to"], r["decision_id"])
        for r in trail
        if r["event"] == "deployment.transition"
        and r["tenant"] == "initechd"
        and r["workflow_id"] == incident
    ]
    assert {(d, to) for d, to, _ in moves} == {
        ("batch", "preempted"),
        ("batch", "queued"),
        ("small", "preempted"),
        ("small", "queued"),
    }
    assert {i for _, _, i in moves} == {plan["preempt_decision_id"]}
    # The spot tenant is told, in its own trail, what it gave; the others get no such notice.
    [told] = [r for r in trail if r["event"] == "incident.degraded"]
    assert told["tenant"] == "initechd" and told["decision_id"] == plan["preempt_decision_id"]
    assert [(d["deployment"], d["action"], d["gpus"]) for d in told["detail"]["deployments"]] == [
        ("batch", "preempt", 2),
        ("small", "preempt", 1),
    ]

    with worker.client() as c:
        r = c.post(f"/v1/incidents/{incident}/resolve", json={"comment": "node replaced"})
        assert r.status_code in (200, 202), r.text
    incident_in_state(worker, incident, "resolved")


@pytest.mark.timeout(600)
def test_capacity_exhaustion_asks_the_same_policy(worker: Worker) -> None:
    """An enterprise deployment that cannot be placed: the victims offered are the degradation
    plan's (standard globexd's train, the spot ones being queued already), refused by the preempt
    intent, so the request queues; the degrade decision is in the request's trail."""
    with worker.client() as c:
        r = c.post(
            "/v1/capacity/exhaustion",
            json={"tenant": "acmed", "deployment": h100_deployment("llm", 1), "gpus": 1},
        )
        assert r.status_code == 202, r.text
    request = r.json()["workflow_id"]
    out = _wait(worker, request)["output"]
    assert out["status"] == "queued" and out["victims"] == [], out
    [refused] = out["preempt_decisions"]
    assert refused["outcome"] == "DENY" and refused["reason_codes"] == ["PREEMPTION_VICTIM_PROTECTED"]
    with worker.client() as c:
        trail = audit_records(c.get("/v1/audit").text)
    [degrade] = [
        r
        for r in trail
        if r["workflow_id"] == request and r["event"] == "decision" and r["detail"]["kind"] == "degrade"
    ]
    payload = degrade["detail"]["payload"]
    assert payload["for_tier"] == "enterprise" and payload["short_gpus"] == 1
    # Every running H100 deployment but the requester's own is in the plan's input.
    assert [(d["tenant"], d["deployment"]) for d in payload["deployments"]] == [("globexd", "train")]
    assert _states(worker)["acmed/llm"] == "queued"

"""kill -9 in the middle of a preemption: after the victims are chosen and the PDP allowed them,
half-way through preempting them, and after preempting them but before placing the requester. The
restarted worker finishes the capacity workflow with each effect exactly once."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from pdp.lifecycle.storage import audit
from pdp.lifecycle.storage.db import Database
from tests.lifecycle.harness import Worker, audit_records, h100_deployment, tenant_doc

H100 = "H100-80GB"
ACME = tenant_doc("acme-eu", "acmek", ["acmek-prod"], isolation="shared", entitlements={H100: 32})
INITECH = tenant_doc("initech-spot", "initechk", ["initechk-batch"], entitlements={H100: 32})


# No periodic queue retry: the re-queued victims must stay where the crash test left them.
WORKER_OPTIONS = {"capacity_retry_schedule": ""}


@pytest.fixture(scope="module")
def tenants(worker: Worker) -> None:
    with worker.client() as c:
        started = {d["tenant"]["name"]: c.post("/v1/tenants", json=d).json() for d in (ACME, INITECH)}
    for name, body in started.items():
        if body["outcome"] == "NEEDS_APPROVAL":
            worker.approve(worker.wait_approval(name)["id"])
        assert worker.wait_workflow(body["workflow_id"])["output"]["status"] == "active"


def _audit(worker: Worker, tenant: str) -> list[dict[str, Any]]:
    with worker.client() as c:
        return audit_records(c.get("/v1/audit", params={"tenant": tenant}).text)


@pytest.mark.parametrize("pause", ["preempt", "preempted:initechk/{big}", "settle:running"])
def test_preemption_killed_midway_completes_with_each_effect_once(
    worker: Worker, tenants: None, pause: str
) -> None:
    tag = pause.split(":")[0]
    big, small, llm = f"{tag}-big", f"{tag}-small", f"{tag}-llm"
    with worker.client() as c:
        for dep in (h100_deployment(big, 4), h100_deployment(small, 2)):
            r = c.post("/v1/tenants/initechk/deployments", json=dep)
            assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"

    worker.kill9()
    worker.start(env={"PDP_LIFECYCLE_PAUSE_AT": pause.format(big=big)})
    with worker.client() as c:
        r = c.post(
            "/v1/capacity/exhaustion",
            json={"tenant": "acmek", "deployment": h100_deployment(llm, 6), "gpus": 6},
        )
    assert r.status_code == 202, r.text
    assert worker.wait_paused() == pause.format(big=big)
    worker.kill9()
    worker.start()

    wf = worker.wait_workflow(r.json()["workflow_id"])
    out = wf["output"]
    assert wf["status"] == "SUCCESS" and out["status"] == "placed", wf
    assert sorted(v["workload"] for v in out["victims"]) == [big, small]
    [preempt] = out["preempt_decisions"]
    assert preempt["outcome"] == "ALLOW"

    victim_trail = [r for r in _audit(worker, "initechk") if r["workflow_id"] == wf["workflow_id"]]
    moves = Counter(
        (r["detail"]["deployment"], r["detail"]["from"], r["detail"]["to"], r["decision_id"])
        for r in victim_trail
        if r["event"] == "deployment.transition"
    )
    assert moves == {
        (big, "running", "preempted", preempt["decision_id"]): 1,
        (big, "preempted", "queued", preempt["decision_id"]): 1,
        (small, "running", "preempted", preempt["decision_id"]): 1,
        (small, "preempted", "queued", preempt["decision_id"]): 1,
    }, moves
    assert [r["detail"]["role"] for r in victim_trail if r["event"] == "capacity.notified"] == ["victim"]

    own = [r for r in _audit(worker, "acmek") if r["workflow_id"] == wf["workflow_id"]]
    placed = [r for r in own if r["event"] == "deployment.transition"]
    assert [(r["detail"]["deployment"], r["detail"]["to"]) for r in placed] == [(llm, "running")]
    assert [r["detail"]["role"] for r in own if r["event"] == "capacity.notified"] == ["requester"]
    # One preempt decision recorded: the choice of victims was not made again after the crash.
    assert [r["detail"]["kind"] for r in own if r["event"] == "decision"] == ["deploy_model", "preempt"]

    with worker.client() as c:
        states = {d["name"]: d["state"] for d in c.get("/v1/tenants/initechk/deployments").json()}
        verified = c.get("/v1/audit/verify").json()
    # The chain verifies, and so does its signed anchor, kill -9 or not.
    assert verified["ok"] and verified["problems"] == [], verified
    assert 0 < verified["anchor"]["seq"] <= verified["chain_end"], verified
    assert (states[big], states[small]) == ("queued", "queued")
    assert audit.verify(Database(worker.database())) == []

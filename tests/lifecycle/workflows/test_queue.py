"""The queue retry, end to end on a real worker (real OPA, DBOS on SQLite): queued deployments are
placed when capacity frees (scale-down, an admin retry with the scheduler's report, the periodic
schedule) in tier-then-FIFO order, through the PDP; preempted deployments go back to the queue and
resume when capacity returns."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

from pdp.lifecycle.services import capacity
from pdp.lifecycle.storage import audit
from pdp.lifecycle.storage.db import Database
from tests.lifecycle.harness import ROOT, Worker, audit_records, h100_deployment, tenant_doc

H100 = "H100-80GB"
TENANTS = {
    # enterprise, never a victim; standard that refuses preemption; two spot tenants
    "acmeq": tenant_doc("acme-eu", "acmeq", ["acmeq-prod"], isolation="shared", entitlements={H100: 16}),
    "globexq": tenant_doc("globex", "globexq", ["globexq-ml"], entitlements={H100: 16}),
    "initechq": tenant_doc("initech-spot", "initechq", ["initechq-batch"], entitlements={H100: 16}),
    "umbrellaq": tenant_doc("initech-spot", "umbrellaq", ["umbrellaq-batch"], entitlements={H100: 32}),
}


# The periodic retry starts off, so each test knows which event placed what; the last test
# turns it on.
WORKER_OPTIONS = {"capacity_retry_schedule": ""}


@pytest.fixture(scope="module")
def tenants(worker: Worker) -> None:
    with worker.client() as c:
        started = {name: c.post("/v1/tenants", json=doc).json() for name, doc in TENANTS.items()}
    for name, body in started.items():
        if body["outcome"] == "NEEDS_APPROVAL":
            worker.approve(worker.wait_approval(name)["id"])
        assert worker.wait_workflow(body["workflow_id"])["output"]["status"] == "active"
    with worker.client() as c:
        r = c.post("/v1/tenants/globexq/deployments", json=h100_deployment("train", 8))
        assert r.status_code == 202, r.text
    assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"
    # The scheduler reports H100s full: what running deployments hold is all there is.
    _retry(worker, {H100: 0})
    assert _view(worker)["classes"][0] == {
        "gpu_class": H100, "capacity": 8, "source": "reported", "running": 8, "free": 0,
    }  # fmt: skip


def _view(worker: Worker) -> dict[str, Any]:
    with worker.client() as c:
        r = c.get("/v1/capacity")
    assert r.status_code == 200, r.text
    view: dict[str, Any] = r.json()
    view["classes"] = [k for k in view["classes"] if k["gpu_class"] == H100]
    return view


def _until(what: str, check: Callable[[], bool], worker: Worker, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never: {what}:\n{worker.log()}"
        time.sleep(0.1)


def _settled(worker: Worker) -> bool:
    """No queue retry enqueued or running."""
    return all(r["status"] not in ("ENQUEUED", "PENDING") for r in _view(worker)["recent_retries"])


def _states(worker: Worker) -> dict[str, str]:
    with worker.client() as c:
        return {
            f"{t}/{d['name']}": d["state"]
            for t in TENANTS
            for d in c.get(f"/v1/tenants/{t}/deployments").json()
        }


def _queue(worker: Worker) -> list[str]:
    return [f"{q['tenant']}/{q['deployment']}" for q in _view(worker)["queue"]]


def _audit(worker: Worker, tenant: str) -> list[dict[str, Any]]:
    with worker.client() as c:
        return audit_records(c.get("/v1/audit", params={"tenant": tenant}).text)


def _moves(worker: Worker, tenant: str, deployment: str) -> list[dict[str, Any]]:
    return [
        r
        for r in _audit(worker, tenant)
        if r["event"] == "deployment.transition" and r["detail"]["deployment"] == deployment
    ]


def _exhausted(worker: Worker, tenant: str, dep: dict[str, Any], gpus: int) -> dict[str, Any]:
    with worker.client() as c:
        r = c.post("/v1/capacity/exhaustion", json={"tenant": tenant, "deployment": dep, "gpus": gpus})
    assert r.status_code == 202, r.text
    wf = worker.wait_workflow(r.json()["workflow_id"])
    assert wf["status"] == "SUCCESS", wf
    return wf["output"]  # type: ignore[no-any-return]


def _retry(worker: Worker, free: dict[str, int] | None = None) -> dict[str, Any]:
    with worker.client() as c:
        r = c.post("/v1/capacity/retry", json={"free_gpus": free or {}})
    assert r.status_code == 202, r.text
    wf = worker.wait_workflow(r.json()["workflow_id"])
    assert wf["status"] == "SUCCESS", wf
    return wf["output"]  # type: ignore[no-any-return]


def test_queue_order_is_tier_then_fifo() -> None:
    tenants = [
        {"name": n, "state": s, "policy": {"tier": t}}
        for n, t, s in (("e", "enterprise", "active"), ("s", "standard", "active"), ("p", "spot", "active"),
                        ("x", "enterprise", "suspended"))
    ]  # fmt: skip
    spec = {"gpu_class": H100, "gpus_per_replica": 1, "replicas": 2}

    def dep(tenant: str, name: str, at: str, state: str = "queued") -> dict[str, Any]:
        return {
            "tenant": tenant,
            "name": name,
            "state": state,
            "spec": spec,
            "queued_at": at,
            "updated_at": at,
        }

    deps = [
        dep("p", "early", "2026-01-01T00:00:01"),
        dep("s", "late", "2026-01-01T00:00:09"),
        dep("e", "latest", "2026-01-01T00:00:10"),
        dep("p", "earliest", "2026-01-01T00:00:00"),
        dep("s", "running", "2026-01-01T00:00:00", "running"),
        dep("x", "suspended-tenant", "2026-01-01T00:00:00"),
    ]
    order = [(q["tenant"], q["deployment"]) for q in capacity.queue_order(tenants, deps)]
    assert order == [("e", "latest"), ("s", "late"), ("p", "earliest"), ("p", "early")]
    room = capacity.headroom(H100, {"clusters": {"c": {"pools": {"a": {"gpu_class": H100, "nodes": 2,
                             "gpus_per_node": 8}}}}}, {}, deps)  # fmt: skip
    assert (room["capacity"], room["source"], room["running"], room["free"]) == (16, "inventory", 2, 14)
    assert capacity.headroom(H100, {}, {H100: 1}, deps)["free"] == 0  # never negative


def test_freed_capacity_places_the_queue_by_tier_then_fifo(worker: Worker, tenants: None) -> None:
    # All full: each request is queued (the only running deployment's tenant refuses preemption).
    for tenant, name in (("initechq", "spot-a"), ("umbrellaq", "spot-b"), ("acmeq", "ent-a")):
        out = _exhausted(worker, tenant, h100_deployment(name, 2), gpus=2)
        assert out["status"] == "queued", out
    assert _queue(worker) == ["acmeq/ent-a", "initechq/spot-a", "umbrellaq/spot-b"]

    # Scaling train down frees 4 GPUs: the enterprise request (queued last) and the first spot
    # one are placed; the second spot one waits (and may not preempt the first: same tier).
    with worker.client() as c:
        r = c.post("/v1/tenants/globexq/deployments/train/scale", json={"target_replicas": 4})
    assert r.status_code == 202, r.text
    assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"
    _until("the scale-down's queue retry ran", lambda: _queue(worker) == ["umbrellaq/spot-b"], worker)
    _until("no queue retry in flight", lambda: _settled(worker), worker)
    states = _states(worker)
    assert (states["acmeq/ent-a"], states["initechq/spot-a"], states["umbrellaq/spot-b"]) == (
        "running", "running", "queued",
    )  # fmt: skip
    assert _view(worker)["classes"][0]["free"] == 0

    [placed] = [m for m in _moves(worker, "acmeq", "ent-a") if m["detail"]["to"] == "running"]
    assert placed["detail"]["from"] == "queued" and placed["decision_id"] and placed["bundle_revision"]
    [decision] = [
        r
        for r in _audit(worker, "acmeq")
        if r["event"] == "decision" and r["decision_id"] == placed["decision_id"]
    ]
    assert decision["detail"]["kind"] == "deploy_model" and decision["detail"]["outcome"] == "ALLOW"
    [notified] = [
        r
        for r in _audit(worker, "acmeq")
        if r["event"] == "capacity.notified" and r["detail"]["deployment"] == "ent-a"
        and r["detail"]["outcome"] == "placed"
    ]  # fmt: skip
    assert (
        notified["workflow_id"] == placed["workflow_id"] and notified["decision_id"] == placed["decision_id"]
    )
    assert notified["bundle_revision"] == placed["bundle_revision"]


def test_preempted_deployment_is_requeued_and_resumes_when_capacity_returns(
    worker: Worker, tenants: None
) -> None:
    told = len([r for r in _audit(worker, "initechq") if r["event"] == "capacity.notified"])
    out = _exhausted(worker, "acmeq", h100_deployment("ent-b", 2), gpus=2)
    assert out["status"] == "placed" and [v["workload"] for v in out["victims"]] == ["spot-a"], out
    [preempt] = out["preempt_decisions"]
    moves = [
        (m["detail"]["from"], m["detail"]["to"], m["decision_id"])
        for m in _moves(worker, "initechq", "spot-a")
    ]
    assert moves[-2:] == [
        ("running", "preempted", preempt["decision_id"]),
        ("preempted", "queued", preempt["decision_id"]),
    ]
    # Queued at the time of preemption: behind spot-b, which waited longer.
    assert _queue(worker) == ["umbrellaq/spot-b", "initechq/spot-a"]

    # The scheduler reports 2 GPUs free: FIFO within the spot tier gives them to spot-b.
    out = _retry(worker, {H100: 2})
    assert out["placed"] == ["umbrellaq/spot-b"] and out["queued"] == ["initechq/spot-a"], out
    # 2 more (reported through the CLI): the preempted deployment resumes.
    cli = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "lifecycle", "capacity-retry", "--free", f"{H100}=2",
         "--url", worker.url, "--token", worker.admin_token],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stdout + cli.stderr
    out = worker.wait_workflow(json.loads(cli.stdout)["workflow_id"])["output"]
    assert out["placed"] == ["initechq/spot-a"] and out["queued"] == [], out
    assert _states(worker)["initechq/spot-a"] == "running"
    resumed = _moves(worker, "initechq", "spot-a")[-1]
    assert (resumed["detail"]["from"], resumed["detail"]["to"]) == ("queued", "running")
    notes = [
        (r["detail"]["role"], r["detail"]["deployment"], r["detail"]["outcome"])
        for r in _audit(worker, "initechq")
        if r["event"] == "capacity.notified"
    ][told:]
    # Told of the preemption, then of its own placement.
    assert notes == [("victim", "ent-b", "placed"), ("requester", "spot-a", "placed")]


def test_a_retry_the_policy_now_denies_is_rejected(worker: Worker, tenants: None) -> None:
    # 24 of umbrellaq's 32 entitled GPUs queued (2 run); then 8 more run elsewhere: 10 + 24 > 32.
    assert _exhausted(worker, "umbrellaq", h100_deployment("wide", 24), gpus=24)["status"] == "queued"
    with worker.client() as c:
        r = c.post("/v1/tenants/umbrellaq/deployments", json=h100_deployment("other", 8))
    assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"
    # Scaling the queued deployment is checked from the replicas it holds now (none), as its
    # workflow would decide it: 10 + 23 > 32. Counted from its 24 asked replicas it was a
    # scale-down the API accepted and the workflow then denied.
    with worker.client() as c:
        r = c.post("/v1/tenants/umbrellaq/deployments/wide/scale", json={"target_replicas": 23})
    assert r.status_code == 403 and "ENTITLEMENT_EXCEEDED" in r.text, r.text
    out = _retry(worker, {H100: 24})
    assert out["rejected"] == ["umbrellaq/wide"], out
    [result] = [r for r in out["results"] if r["deployment"] == "wide"]
    assert "ENTITLEMENT_EXCEEDED" in result["reason"] and result["decision"]["outcome"] == "DENY"
    assert _states(worker)["umbrellaq/wide"] == "rejected"
    notes = [r for r in _audit(worker, "umbrellaq") if r["event"] == "capacity.notified"]
    assert (
        notes[-1]["detail"]["outcome"] == "rejected"
        and notes[-1]["decision_id"] == result["decision"]["decision_id"]
    )


def test_offboarding_drops_queued_work_and_frees_capacity_for_the_queue(
    worker: Worker, tenants: None
) -> None:
    assert _exhausted(worker, "initechq", h100_deployment("spot-c", 4), gpus=4)["status"] == "queued"
    assert _exhausted(worker, "umbrellaq", h100_deployment("spot-d", 2), gpus=2)["status"] == "queued"
    assert _view(worker)["classes"][0]["free"] == 0
    with worker.client() as c:
        r = c.post("/v1/tenants/initechq/offboard", json={"reason": "done"})
    assert r.status_code == 202, r.text
    assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "offboarded"
    # initechq's running spot-a (2 GPUs) freed them for spot-d; its queued spot-c left the queue.
    _until("spot-d placed", lambda: _states(worker).get("umbrellaq/spot-d") == "running", worker)
    assert _states(worker)["initechq/spot-c"] == "drained"
    assert "initechq/spot-c" not in _queue(worker)


def test_the_periodic_retry_places_what_no_event_announced(worker: Worker, tenants: None) -> None:
    # A report of free GPUs beyond what the reporting request could use: 6 free, it needs 8 (and
    # may not preempt), so it is queued, and nothing else is retried by that workflow.
    assert _exhausted(worker, "umbrellaq", h100_deployment("small", 2), gpus=2)["status"] == "queued"
    assert _exhausted(worker, "umbrellaq", h100_deployment("big", 8), gpus=2)["status"] == "queued"
    assert _view(worker)["classes"][0]["free"] == 6
    time.sleep(2)
    assert _states(worker)["umbrellaq/small"] == "queued"  # no schedule: nothing retries it

    worker.stop()
    worker.opts["capacity_retry_schedule"] = "* * * * * *"  # every second
    worker.start()
    _until("the schedule placed small", lambda: _states(worker)["umbrellaq/small"] == "running", worker)
    [placed] = [m for m in _moves(worker, "umbrellaq", "small") if m["detail"]["to"] == "running"]
    assert placed["workflow_id"].startswith("sched-capacity-retry-"), placed
    assert _states(worker)["umbrellaq/big"] == "queued"  # 8 > 4 free, and no victims allowed
    worker.stop()
    worker.opts["capacity_retry_schedule"] = ""
    worker.start()
    assert audit.verify(Database(worker.database())) == []

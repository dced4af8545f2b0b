"""Capacity exhaustion (preempt lower tiers, else queue or reject, then notify) and the scale,
batch-size and GPU-sharing requests, end to end on a real worker (real OPA, DBOS on SQLite)."""

from __future__ import annotations

from typing import Any

import pytest

from pdp.embedded import EmbeddedPDP
from pdp.lifecycle.services import degradation
from tests.lifecycle.harness import Worker, audit_records, h100_deployment, tenant_doc

# acme9 is acme-eu (enterprise, allow_preemption false, no GPU sharing, max_batch_size 32) on
# shared pools; initech9 is a spot tenant with H100s; globex9 is standard with allow_preemption false.
ACME9 = tenant_doc("acme-eu", "acme9", ["acme9-prod"], isolation="shared", entitlements={"H100-80GB": 8})
INITECH9 = tenant_doc("initech-spot", "initech9", ["initech9-batch"], entitlements={"H100-80GB": 8})
GLOBEX9 = tenant_doc("globex", "globex9", ["globex9-ml"], entitlements={"H100-80GB": 12, "A100-40GB": 4})


# No periodic queue retry: these tests check what the exhaustion workflow itself leaves, which
# a retry would move on (tests/lifecycle/workflows/test_queue.py covers the retry).
WORKER_OPTIONS = {"capacity_retry_schedule": ""}


@pytest.fixture(scope="module")
def tokens(worker: Worker) -> dict[str, str]:
    """The three tenants onboarded, each with running H100 deployments."""
    started = {}
    with worker.client() as c:
        for doc in (ACME9, INITECH9, GLOBEX9):
            r = c.post("/v1/tenants", json=doc)
            assert r.status_code == 202, r.text
            started[doc["tenant"]["name"]] = r.json()
    for name, body in started.items():
        if body["outcome"] == "NEEDS_APPROVAL":
            worker.approve(worker.wait_approval(name)["id"])
        wf = worker.wait_workflow(body["workflow_id"])
        assert wf["output"]["status"] == "active", wf
    deployments = {
        "acme9": [h100_deployment("serve", 2, batch_size=16)],
        "initech9": [h100_deployment("batch-1", 1, 4), h100_deployment("batch-2", 1, 2)],
        "globex9": [h100_deployment("train", 1, 4), h100_deployment("eval", 1, 4)],
    }
    with worker.client() as c:
        for tenant, deps in deployments.items():
            for dep in deps:
                r = c.post(f"/v1/tenants/{tenant}/deployments", json=dep)
                assert r.status_code == 202, r.text
                assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"
    return {name: body["tenant_token"] for name, body in started.items()}


def _states(worker: Worker) -> dict[str, str]:
    with worker.client() as c:
        return {
            f"{t}/{d['name']}": d["state"]
            for t in ("acme9", "initech9", "globex9")
            for d in c.get(f"/v1/tenants/{t}/deployments").json()
        }


def _audit(worker: Worker, tenant: str) -> list[dict[str, Any]]:
    with worker.client() as c:
        return audit_records(c.get("/v1/audit", params={"tenant": tenant}).text)


def _exhausted(
    worker: Worker, tenant: str, dep: dict[str, Any], gpus: int, queue: bool = True
) -> dict[str, Any]:
    with worker.client() as c:
        r = c.post(
            "/v1/capacity/exhaustion",
            json={"tenant": tenant, "deployment": dep, "gpus": gpus, "queue": queue},
        )
    assert r.status_code == 202, r.text
    wf = worker.wait_workflow(r.json()["workflow_id"])
    assert wf["status"] == "SUCCESS", wf
    return wf["output"]  # type: ignore[no-any-return]


def test_candidates_spot_first_then_standard_never_enterprise(stack: EmbeddedPDP) -> None:
    """The victims and their order come from the degradation policy (real OPA), not from Python."""
    tenants = [
        {"name": n, "state": "active", "policy": {"tier": t}}
        for n, t in (("acme-eu", "enterprise"), ("globex", "standard"), ("initech-spot", "spot"))
    ]
    spec = {"gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 2}
    deps = [
        {"tenant": t, "name": f"{t}-w", "state": "running", "spec": spec}
        for t in ("acme-eu", "globex", "initech-spot")
    ] + [{"tenant": "initech-spot", "name": "gone", "state": "preempted", "spec": spec}]
    rows = degradation.deployments_of_class("H100-80GB", tenants, deps)
    assert [r["deployment"] for r in rows] == ["acme-eu-w", "globex-w", "initech-spot-w"]

    def victims(needed: int) -> list[tuple[str, str]] | None:
        asked = degradation.intent(
            "capacity_exhaustion", "H100-80GB", needed, rows, "test", for_tier="enterprise"
        )
        plan = degradation.plan(stack.point.decide(asked).to_dict())
        assert plan is not None
        return (
            [(v["tenant"], v["workload"]) for v in degradation.victims(plan["steps"])]
            if plan["sufficient"]
            else None
        )

    assert victims(3) == [("initech-spot", "initech-spot-w"), ("globex", "globex-w")]
    assert victims(2) == [("initech-spot", "initech-spot-w")]
    assert victims(5) is None  # the enterprise deployment is never offered
    assert degradation.deployments_of_class("A100-40GB", tenants, deps) == []


def test_spot_deployment_is_preempted_for_an_enterprise_request(
    worker: Worker, tokens: dict[str, str]
) -> None:
    out = _exhausted(worker, "acme9", h100_deployment("llm", 2), gpus=4)
    assert out["status"] == "placed", out
    assert [(v["tenant"], v["workload"]) for v in out["victims"]] == [("initech9", "batch-1")]
    [preempt] = out["preempt_decisions"]
    assert preempt["outcome"] == "ALLOW" and preempt["decision_id"] and preempt["bundle_revision"]
    states = _states(worker)
    # The victim is back in the queue, to resume when capacity returns.
    assert states["initech9/batch-1"] == "queued" and states["acme9/llm"] == "running"
    assert states["initech9/batch-2"] == "running" and states["acme9/serve"] == "running"

    victim_trail = _audit(worker, "initech9")
    moves = [
        (r["detail"]["from"], r["detail"]["to"], r["decision_id"], r["bundle_revision"])
        for r in victim_trail
        if r["event"] == "deployment.transition" and r["detail"]["deployment"] == "batch-1"
    ]
    links = (preempt["decision_id"], preempt["bundle_revision"])
    assert moves[1:] == [("running", "preempted", *links), ("preempted", "queued", *links)], moves
    [notified] = [r for r in victim_trail if r["event"] == "capacity.notified"]
    assert notified["detail"]["role"] == "victim" and notified["detail"]["outcome"] == "placed"
    assert (
        notified["detail"]["victims"] == ["initech9/batch-1"]
        and notified["decision_id"] == preempt["decision_id"]
    )
    assert any(
        r["event"] == "capacity.notified" and r["detail"]["role"] == "requester"
        for r in _audit(worker, "acme9")
    )
    with worker.client() as c:
        assert c.get("/v1/audit/verify").json()["ok"] is True
    # A tenant token may not report capacity exhaustion.
    with worker.client(tokens["acme9"]) as c:
        r = c.post("/v1/capacity/exhaustion", json={"tenant": "acme9", "deployment": h100_deployment("x", 1)})
        assert r.status_code == 403


def test_protected_deployments_are_never_victims_and_the_request_queues_or_is_rejected(
    worker: Worker, tokens: dict[str, str]
) -> None:
    before = _states(worker)
    # 8 GPUs: the spot deployments are not enough, so standard globex9 (allow_preemption false) is
    # offered too; the PDP refuses all-or-nothing and the allowed subset frees too little.
    out = _exhausted(worker, "acme9", h100_deployment("llm2", 1), gpus=8)
    assert out["status"] == "queued" and out["victims"] == [], out
    assert "PREEMPTION_VICTIM_PROTECTED" in out["reason"]
    first = out["preempt_decisions"][0]
    assert first["outcome"] == "DENY" and set(first["reason_codes"]) == {"PREEMPTION_VICTIM_PROTECTED"}
    assert {v["tenant"] for v in first["preemptible_victims"]} == {"initech9"}

    out = _exhausted(worker, "acme9", h100_deployment("llm3", 1), gpus=8, queue=False)
    assert out["status"] == "rejected" and "PREEMPTION_VICTIM_PROTECTED" in out["reason"], out

    # Nothing of enterprise acme9 is ever offered: globex9 (standard) finds no victims at all.
    out = _exhausted(worker, "globex9", h100_deployment("big", 1), gpus=16)
    assert out["status"] == "queued" and out["preempt_decisions"] == [], out

    after = _states(worker)
    assert after.pop("acme9/llm2") == "queued" and after.pop("acme9/llm3") == "rejected"
    assert after.pop("globex9/big") == "queued"
    assert after == before  # no deployment changed state
    notified = [r["detail"]["outcome"] for r in _audit(worker, "acme9") if r["event"] == "capacity.notified"]
    assert notified[-2:] == ["queued", "rejected"]


def test_batch_size_above_the_sla_is_refused_and_within_it_applied(
    worker: Worker, tokens: dict[str, str]
) -> None:
    with worker.client(tokens["acme9"]) as c:
        r = c.post("/v1/tenants/acme9/deployments/serve/batch-size", json={"batch_size": 64})
        assert r.status_code == 403 and r.json()["detail"]["reason_codes"] == ["BATCH_SIZE_ABOVE_SLA"], r.text
        r = c.post("/v1/tenants/acme9/deployments/serve/batch-size", json={"batch_size": 32})
        assert r.status_code == 202 and r.json()["outcome"] == "ALLOW", r.text
    assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"
    with worker.client(tokens["acme9"]) as c:
        [serve] = [d for d in c.get("/v1/tenants/acme9/deployments").json() if d["name"] == "serve"]
    assert serve["spec"]["batch_size"] == 32


def test_gpu_sharing_is_refused_for_a_tenant_that_forbids_it(worker: Worker, tokens: dict[str, str]) -> None:
    with worker.client(tokens["acme9"]) as c:
        r = c.post("/v1/tenants/acme9/gpu-sharing", json={"mode": "time-slicing"})
    assert r.status_code == 403 and "SHARING_NOT_ALLOWED" in r.json()["detail"]["reason_codes"], r.text
    with worker.client(tokens["globex9"]) as c:
        r = c.post("/v1/tenants/globex9/gpu-sharing", json={"mode": "time-slicing"})
    assert r.status_code == 202 and r.json()["outcome"] == "ALLOW", r.text
    out = worker.wait_workflow(r.json()["workflow_id"])["output"]
    assert out["status"] == "applied", out
    # No H100 pool time-slices: globex9's running H100 deployments keep their placement.
    kept = {r["deployment"]: r for r in out["changed"]["replaced"]}
    assert {"train", "eval"} <= set(kept), out
    assert all(not r["replaced"] and "SHARING_MODE_UNAVAILABLE" in r["reason"] for r in kept.values()), out


def test_scale_past_the_entitlement_starts_an_approval(worker: Worker, tokens: dict[str, str]) -> None:
    with worker.client(tokens["acme9"]) as c:
        r = c.post("/v1/tenants/acme9/deployments/serve/scale", json={"target_replicas": 12})
    assert r.status_code == 202 and r.json()["reason_codes"] == ["QUOTA_APPROVAL_REQUIRED"], r.text
    workflow_id = r.json()["workflow_id"]
    approval = worker.wait_approval("acme9")
    assert approval["id"] == workflow_id and approval["kind"] == "scale"
    worker.approve(workflow_id, approved=False)
    assert worker.wait_workflow(workflow_id)["output"]["status"] == "rejected"
    with worker.client(tokens["acme9"]) as c:
        [serve] = [d for d in c.get("/v1/tenants/acme9/deployments").json() if d["name"] == "serve"]
    assert serve["spec"]["replicas"] == 2  # unchanged

"""Deployments realized as workload objects, SLA changes and GPU-sharing changes re-placing them,
end to end on a real worker (real OPA, DBOS on SQLite, the dry-run adapter's recorded effects)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy as sa

from pdp.lifecycle.storage.db import Database
from tests.lifecycle.harness import ROOT, Worker, audit_records, onboard, tenant_doc

# globex7: standard, shared, residency any, allow_preemption false, GPU sharing allowed.
GLOBEX7 = tenant_doc("globex", "globex7", ["globex7-ml"])
INITECH7 = tenant_doc("initech-spot", "initech7", ["initech7-batch"], entitlements={"H100-80GB": 8})
SERVE = {"deployment": "serve", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 2}
TUNE = {
    "deployment": "tune",
    "gpu_class": "A100-40GB",
    "gpus_per_replica": 1,
    "replicas": 2,
    "sharing": "time-slicing",
    # Served by TGI: the runtime and model travel through the decision to the workload object.
    "runtime": "tgi",
    "model": "bigscience/bloom-560m",
}


def _applied(worker: Worker, kind: str, namespace: str, name: str) -> list[dict[str, Any]]:
    """Every body the dry-run adapter applied for one object, oldest first."""
    db = Database(worker.database())
    try:
        with db.read() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT op, body FROM lc_effects "
                    "WHERE kind = :k AND namespace = :ns AND name = :n ORDER BY seq"
                ),
                {"k": kind, "ns": namespace, "n": name},
            ).all()
    finally:
        db.close()
    return [json.loads(r[1]) | {"_op": r[0]} for r in rows]


def _deployment(worker: Worker, name: str, namespace: str = "globex7-ml") -> dict[str, Any]:
    return [b for b in _applied(worker, "Deployment", namespace, name) if b["_op"] == "apply"][-1]


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _affinity(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    node = _pod(obj)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    [term] = node["nodeSelectorTerms"]
    return {r["key"]: r for r in term["matchExpressions"]}


def _audit(worker: Worker, tenant: str) -> list[dict[str, Any]]:
    with worker.client() as c:
        return audit_records(c.get("/v1/audit", params={"tenant": tenant}).text)


def _deploy(worker: Worker, token: str, tenant: str, spec: dict[str, Any]) -> dict[str, Any]:
    with worker.client(token) as c:
        r = c.post(f"/v1/tenants/{tenant}/deployments", json=spec)
    assert r.status_code == 202, r.text
    out: dict[str, Any] = worker.wait_workflow(r.json()["workflow_id"])["output"]
    assert out["status"] == "applied", out
    return out


@pytest.fixture(scope="module")
def tokens(worker: Worker) -> dict[str, str]:
    """globex7 running an H100 and a time-sliced A100 deployment; initech7 (spot) an H100 one."""
    tokens = {"globex7": onboard(worker, GLOBEX7), "initech7": onboard(worker, INITECH7)}
    for spec in (SERVE, TUNE):
        _deploy(worker, tokens["globex7"], "globex7", spec)
    _deploy(worker, tokens["initech7"], "initech7", {**SERVE, "deployment": "batch", "replicas": 4})
    return tokens


def test_deploy_applies_a_workload_object_that_scale_and_batch_size_reapply(
    worker: Worker, tokens: dict[str, str]
) -> None:
    serve = _deployment(worker, "serve")
    assert serve["metadata"]["labels"]["gpupaas.io/tenant"] == "globex7"
    assert serve["metadata"]["labels"]["gpupaas.io/deployment"] == "serve"
    assert serve["spec"]["replicas"] == 2
    assert _pod(serve)["priorityClassName"] == "gpupaas-standard"
    assert _pod(serve)["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert _affinity(serve) == {
        "gpupaas.io/dedicated-tenant": {"key": "gpupaas.io/dedicated-tenant", "operator": "DoesNotExist"},
        # residency any: the regions of the clusters with a shared H100 pool
        "topology.kubernetes.io/region": {
            "key": "topology.kubernetes.io/region",
            "operator": "In",
            "values": ["eu-west-1", "us-east-1"],
        },
    }
    [applied] = [r for r in _audit(worker, "globex7") if r["event"] == "workload.applied"][:1]
    assert applied["detail"]["object"] == "Deployment/globex7-ml/serve" and applied["decision_id"]
    assert applied["decision_id"] == serve["metadata"]["annotations"]["gpupaas.io/placement-decision"]

    with worker.client(tokens["globex7"]) as c:
        r = c.post("/v1/tenants/globex7/deployments/serve/scale", json={"target_replicas": 3})
    assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"
    scaled = _deployment(worker, "serve")
    assert scaled["spec"]["replicas"] == 3 and _affinity(scaled) == _affinity(serve)
    with worker.client(tokens["globex7"]) as c:
        r = c.post("/v1/tenants/globex7/deployments/serve/batch-size", json={"batch_size": 8})
    assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"
    args = _pod(_deployment(worker, "serve"))["containers"][0]["args"]
    assert args[args.index("--max-num-seqs") + 1] == "8"
    [tgi] = _pod(_deployment(worker, "tune"))["containers"]
    assert tgi["image"] == "ghcr.io/huggingface/text-generation-inference:3.3.4"
    assert tgi["args"][:4] == ["--model-id", "bigscience/bloom-560m", "--num-shard", "1"]


def test_denied_sla_change_is_403_with_reason_codes_and_changes_nothing(
    worker: Worker, tokens: dict[str, str]
) -> None:
    before = (_audit(worker, "globex7"), _applied(worker, "PriorityClass", "", "gpupaas-tenant-globex7"))
    with worker.client(tokens["globex7"]) as c:
        r = c.post("/v1/tenants/globex7/sla", json={"tier": "enterprise", "isolation": "dedicated"})
        assert r.status_code == 403, r.text
        assert r.json()["detail"]["reason_codes"] == ["ISOLATION_UNSATISFIABLE"]
        # globex7 forbids preemption, which spot capacity cannot promise
        r = c.post("/v1/tenants/globex7/sla", json={"tier": "spot"})
        assert r.status_code == 403 and r.json()["detail"]["reason_codes"] == ["TENANT_CONTRADICTION"], r.text
        assert c.post("/v1/tenants/globex7/sla", json={}).status_code == 422
        assert c.post("/v1/tenants/initech7/sla", json={"tier": "standard"}).status_code == 404
        assert c.get("/v1/tenants/globex7").json()["policy"]["tier"] == "standard"
    cli = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "lifecycle", "sla", "globex7", "--isolation", "dedicated",
         "--url", worker.url, "--token", tokens["globex7"]],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert cli.returncode == 1 and "ISOLATION_UNSATISFIABLE" in cli.stdout, cli.stdout + cli.stderr
    after = (_audit(worker, "globex7"), _applied(worker, "PriorityClass", "", "gpupaas-tenant-globex7"))
    assert after == before


def test_sla_upgrade_waits_for_approval_then_republishes_and_replaces(
    worker: Worker, tokens: dict[str, str]
) -> None:
    before = {n: _deployment(worker, n) for n in ("serve", "tune")}
    with worker.client(tokens["globex7"]) as c:
        r = c.post("/v1/tenants/globex7/sla", json={"tier": "enterprise"})
    assert r.status_code == 202 and r.json()["reason_codes"] == ["SLA_APPROVAL_REQUIRED"], r.text
    workflow_id = r.json()["workflow_id"]
    approval = worker.wait_approval("globex7")
    assert approval["id"] == workflow_id and approval["kind"] == "change_sla"
    with worker.client() as c:
        assert c.get("/v1/tenants/globex7").json()["policy"]["tier"] == "standard"  # not before approval
    worker.approve(workflow_id)
    wf = worker.wait_workflow(workflow_id)
    out = wf["output"]
    assert out["status"] == "applied" and out["tier"] == "enterprise", wf

    with worker.client() as c:
        assert c.get("/v1/tenants/globex7").json()["policy"]["tier"] == "enterprise"
    # The PriorityClass follows the tier (replaced: its value is immutable).
    classes = _applied(worker, "PriorityClass", "", "gpupaas-tenant-globex7")
    assert [(b["_op"], b["value"]) for b in classes] == [("apply", 2000), ("delete", 2000), ("apply", 3000)]
    trail = _audit(worker, "globex7")
    [updated] = [
        r for r in trail if r["event"] == "tenant.policy_updated" and r["workflow_id"] == workflow_id
    ]
    assert updated["detail"]["tier"] == {"from": "standard", "to": "enterprise"}
    assert updated["bundle_revision"] == out["bundle_revision"] != r.json()["bundle_revision"]

    # Both running deployments were placed afresh under the new policy: the priority moved, the
    # affinity did not; each re-placement is audited with its decision and the new revision.
    replaced = {x["deployment"]: x for x in out["replaced"]}
    assert set(replaced) == {"serve", "tune"} and all(x["replaced"] for x in replaced.values()), out
    assert all(x["changed"] == ["priority_class_name"] for x in replaced.values())
    records = {
        r["detail"]["deployment"]: r
        for r in trail
        if r["event"] == "deployment.replaced" and r["workflow_id"] == workflow_id
    }
    for name, old in before.items():
        new = _deployment(worker, name)
        assert _pod(old)["priorityClassName"] == "gpupaas-standard"
        assert _pod(new)["priorityClassName"] == "gpupaas-enterprise"
        assert _affinity(new) == _affinity(old) and new["spec"]["replicas"] == old["spec"]["replicas"]
        rec = records[name]
        assert (rec["decision_id"], rec["bundle_revision"]) == (
            replaced[name]["decision_id"],
            out["bundle_revision"],
        )
        assert rec["decision_id"] == new["metadata"]["annotations"]["gpupaas.io/placement-decision"]

    # The same SLA again moves nothing.
    with worker.client(tokens["globex7"]) as c:
        r = c.post("/v1/tenants/globex7/sla", json={"tier": "enterprise"})
    assert r.status_code == 202 and r.json()["outcome"] == "ALLOW", r.text
    again = worker.wait_workflow(r.json()["workflow_id"])["output"]
    assert again["status"] == "applied" and not any(x["replaced"] for x in again["replaced"]), again


def test_gpu_sharing_change_replaces_the_workloads_it_moves(worker: Worker, tokens: dict[str, str]) -> None:
    serve, tune = _deployment(worker, "serve"), _deployment(worker, "tune")
    with worker.client(tokens["globex7"]) as c:
        r = c.post("/v1/tenants/globex7/gpu-sharing", json={"mode": "mig", "gpu_class": "A100-40GB"})
    assert r.status_code == 202 and r.json()["outcome"] == "ALLOW", r.text
    out = worker.wait_workflow(r.json()["workflow_id"])["output"]
    assert out["status"] == "applied", out
    [moved] = out["changed"]["replaced"]  # the H100 deployment is not of the class
    assert moved["deployment"] == "tune" and moved["replaced"], out
    assert set(moved["changed"]) == {"clusters", "regions", "sharing"}

    new = _deployment(worker, "tune")
    assert new["metadata"]["annotations"]["gpupaas.io/eligible-clusters"] == "us-east"
    assert tune["metadata"]["annotations"]["gpupaas.io/eligible-clusters"] == "eu-west,us-east"
    assert _affinity(new)["topology.kubernetes.io/region"]["values"] == ["us-east-1"]
    assert _affinity(new)["nvidia.com/mig.strategy"]["values"] == ["mixed", "single"]
    assert "nvidia.com/gpu.sharing-strategy" in _affinity(tune)
    assert "nvidia.com/gpu.sharing-strategy" not in _affinity(new)
    assert _deployment(worker, "serve") == serve
    with worker.client() as c:
        deps = {d["name"]: d for d in c.get("/v1/tenants/globex7/deployments").json()}
    assert deps["tune"]["spec"]["sharing"] == "mig" and deps["serve"]["spec"]["sharing"] == "none"
    [record] = [r for r in _audit(worker, "globex7") if r["event"] == "deployment.replaced"
                and r["detail"]["cause"] == "request_gpu_sharing"]  # fmt: skip
    assert (
        record["detail"]["from"]["sharing"] == "time-slicing" and record["detail"]["to"]["sharing"] == "mig"
    )
    assert record["decision_id"] == moved["decision_id"]


def test_failed_replacement_restores_the_previous_policy_objects_and_placements(
    worker: Worker, tokens: dict[str, str]
) -> None:
    worker.kill9()
    worker.start(env={"PDP_LIFECYCLE_FAIL_AT": "replace:tune"})
    try:
        before = {n: _deployment(worker, n) for n in ("serve", "tune")}
        with worker.client(tokens["globex7"]) as c:
            r = c.post("/v1/tenants/globex7/sla", json={"tier": "standard"})  # a downgrade: no approval
        assert r.status_code == 202 and r.json()["outcome"] == "ALLOW", r.text
        wf = worker.wait_workflow(r.json()["workflow_id"])
        out = wf["output"]
        assert out["status"] == "failed" and out["failed_at"] == "replace:tune", wf
        # serve had been re-placed (standard priority) before tune failed: it is put back.
        assert out["restored"] == ["serve"], out
        assert {n: _deployment(worker, n) for n in ("serve", "tune")} == before
        with worker.client() as c:
            assert c.get("/v1/tenants/globex7").json()["policy"]["tier"] == "enterprise"
        classes = _applied(worker, "PriorityClass", "", "gpupaas-tenant-globex7")
        assert [b["value"] for b in classes[-4:]] == [3000, 2000, 2000, 3000]
        events = [r["event"] for r in _audit(worker, "globex7") if r["workflow_id"] == wf["workflow_id"]]
        assert events.count("tenant.policy_updated") == 2 and "sla.compensated" in events
        assert "deployment.replacement_reverted" in events
        # The bundle serves the restored policy again: a fresh decision has the enterprise priority.
        with worker.client(tokens["globex7"]) as c:
            r = c.post(
                "/v1/tenants/globex7/deployments", json={**SERVE, "deployment": "serve2", "replicas": 1}
            )
        assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"
        assert _pod(_deployment(worker, "serve2"))["priorityClassName"] == "gpupaas-enterprise"
    finally:
        worker.kill9()
        worker.start()


def test_sla_change_killed_midway_resumes_with_each_replacement_once(
    worker: Worker, tokens: dict[str, str]
) -> None:
    worker.kill9()
    worker.start(env={"PDP_LIFECYCLE_PAUSE_AT": "replace:tune"})
    with worker.client(tokens["globex7"]) as c:
        r = c.post("/v1/tenants/globex7/sla", json={"tier": "standard"})
    assert r.status_code == 202, r.text
    assert worker.wait_paused() == "replace:tune"  # serve is re-placed already
    worker.kill9()
    worker.start()
    wf = worker.wait_workflow(r.json()["workflow_id"])
    out = wf["output"]
    assert out["status"] == "applied", wf
    assert {x["deployment"] for x in out["replaced"] if x["replaced"]} == {"serve", "serve2", "tune"}
    for name in ("serve", "serve2", "tune"):
        assert _pod(_deployment(worker, name))["priorityClassName"] == "gpupaas-standard"
    events = [
        (r["event"], r["detail"].get("deployment", ""))
        for r in _audit(worker, "globex7")
        if r["workflow_id"] == wf["workflow_id"]
    ]
    assert events.count(("tenant.policy_updated", "")) == 1
    assert sorted(d for e, d in events if e == "deployment.replaced") == ["serve", "serve2", "tune"]
    with worker.client() as c:
        assert c.get("/v1/tenants/globex7").json()["policy"]["tier"] == "standard"
        assert c.get("/v1/audit/verify").json()["ok"] is True


def test_preemption_evicts_and_offboarding_deletes_the_workload_objects(
    worker: Worker, tokens: dict[str, str]
) -> None:
    # globex7 (standard) needs 4 H100s: initech7's spot deployment is preempted.
    with worker.client() as c:
        r = c.post(
            "/v1/capacity/exhaustion",
            json={
                "tenant": "globex7",
                "deployment": {**SERVE, "deployment": "big", "replicas": 4},
                "gpus": 4,
            },
        )
    assert r.status_code == 202, r.text
    out = worker.wait_workflow(r.json()["workflow_id"])["output"]
    assert out["status"] == "placed" and [v["workload"] for v in out["victims"]] == ["batch"], out
    batch = _applied(worker, "Deployment", "initech7-batch", "batch")
    assert [b["spec"]["replicas"] for b in batch][:2] == [4, 0]  # evicted, object kept
    assert batch[1]["spec"]["template"] == batch[0]["spec"]["template"]
    [evicted] = [r for r in _audit(worker, "initech7") if r["event"] == "workload.evicted"]
    assert evicted["decision_id"] == out["preempt_decisions"][-1]["decision_id"]
    assert _deployment(worker, "big")["spec"]["replicas"] == 4

    with worker.client(tokens["initech7"]) as c:
        r = c.post("/v1/tenants/initech7/offboard", json={"reason": "test"})
    assert r.status_code == 202, r.text
    wf = worker.wait_workflow(r.json()["workflow_id"])
    assert wf["output"]["status"] == "offboarded", wf
    assert _applied(worker, "Deployment", "initech7-batch", "batch")[-1]["_op"] == "delete"
    with worker.client() as c:
        cert = c.get("/v1/tenants/initech7/certificate").json()["certificate"]
    assert "Deployment/initech7-batch/batch" in cert["objects_would_be_destroyed"]

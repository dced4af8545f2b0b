"""The API and the workflows end to end, on a real worker process (real OPA, real DBOS on SQLite),
including kill -9 in the middle of onboarding and offboarding."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from pdp.lifecycle.storage import audit
from pdp.lifecycle.storage.db import Database
from pdp.lifecycle.storage.effects import EffectLog
from pdp.substrate.dryrun import DryRunAdapter
from tests.lifecycle.harness import ROOT, Worker, audit_records, deploy, h100_deployment, onboard, tenant_doc

GLOBEX2 = tenant_doc("globex", "globex2", ["globex2-ml"])
INITECH2 = tenant_doc("initech-spot", "initech2", ["initech2-batch"])


@pytest.fixture(scope="module")
def tokens(worker: Worker) -> dict[str, str]:
    return {"globex2": onboard(worker, GLOBEX2), "initech2": onboard(worker, INITECH2)}


def _effects(worker: Worker) -> list[dict[str, Any]]:
    db = Database(worker.database())
    try:
        return DryRunAdapter(EffectLog(db)).effects()
    finally:
        db.close()


def _counts(worker: Worker, op: str, names: set[str]) -> Counter[str]:
    return Counter(
        f"{e['kind']}/{e['namespace']}/{e['name']}"
        for e in _effects(worker)
        if e["op"] == op and (e["namespace"] in names or any(n in e["name"] for n in names))
    )


def _events(worker: Worker, tenant: str) -> list[str]:
    with worker.client() as c:
        records = audit_records(c.get("/v1/audit", params={"tenant": tenant}).text)
    return [r["event"] + ":" + r["detail"].get("to", "") for r in records]


def test_tenant_token_sees_and_acts_on_its_own_tenant_only(worker: Worker, tokens: dict[str, str]) -> None:
    with worker.client(tokens["initech2"]) as c:
        assert [t["name"] for t in c.get("/v1/tenants").json()] == ["initech2"]
        assert c.get("/v1/tenants/initech2").json()["state"] == "active"
        assert c.get("/v1/tenants/globex2").status_code == 404
        assert c.get("/v1/tenants/globex2/deployments").status_code == 404
        assert (
            c.post("/v1/tenants/globex2/quotas", json={"entitlements": {"H100-80GB": 9}}).status_code == 404
        )
        assert c.get("/v1/workflows/onboard-globex2").status_code == 404
        assert c.post("/v1/tenants", json=GLOBEX2).status_code == 403
        assert c.post("/v1/approvals/onboard-globex2", json={"approved": True}).status_code == 403
        assert all(r["tenant"] == "initech2" for r in audit_records(c.get("/v1/audit").text))
    with worker.client("not-a-token") as c:
        assert c.get("/v1/tenants").status_code == 401


def test_onboarding_created_the_objects_and_a_verifiable_trail(
    worker: Worker, tokens: dict[str, str]
) -> None:
    applied = _counts(worker, "would_apply", {"globex2-ml", "globex2"})
    assert applied["ResourceQuota/globex2-ml/gpupaas-gpu-quota"] == 1
    assert applied["ClusterQueue//gpupaas-globex2"] == 1
    assert set(applied.values()) == {1}
    events = _events(worker, "globex2")
    assert events[0] == "tenant.created:pending"
    assert "tenant.transition:active" in events and "policy.published:" in events
    with worker.client() as c:
        verified = c.get("/v1/audit/verify").json()
    # The chain verifies, and so does its signed anchor, kill -9 or not.
    assert verified["ok"] and verified["problems"] == [], verified
    assert 0 < verified["anchor"]["seq"] <= verified["chain_end"], verified


def test_deny_returns_reason_codes_and_changes_nothing(worker: Worker, tokens: dict[str, str]) -> None:
    with worker.client(tokens["initech2"]) as c:
        r = c.post(
            "/v1/tenants/initech2/deployments",
            json={"deployment": "huge", "gpu_class": "A100-40GB", "gpus_per_replica": 4, "replicas": 5,
                  "sharing": "time-slicing"},
        )  # fmt: skip
        assert r.status_code == 403
        assert r.json()["detail"]["reason_codes"] == ["ENTITLEMENT_EXCEEDED"]
        assert c.get("/v1/tenants/initech2/deployments").json() == []


def test_concurrent_requests_cannot_both_spend_the_entitlement(
    worker: Worker, tokens: dict[str, str]
) -> None:
    # Each asks for 10 of the 16 entitled GPUs: each is allowed alone, not both together. Both
    # pass the API's check; each answer is the decision made when its change was applied.
    responses: list[httpx.Response] = []

    def deploy(name: str) -> None:
        with worker.client(tokens["initech2"]) as c:
            responses.append(c.post(
                "/v1/tenants/initech2/deployments",
                json={"deployment": name, "gpu_class": "A100-40GB", "gpus_per_replica": 1, "replicas": 10,
                      "sharing": "time-slicing"},
            ))  # fmt: skip

    threads = [threading.Thread(target=deploy, args=(n,)) for n in ("batch-a", "batch-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    answers = sorted(
        ((r.status_code, r.json() if r.status_code == 202 else r.json()["detail"]) for r in responses),
        key=lambda answer: answer[0],
    )
    assert [(code, a["status"], a["outcome"]) for code, a in answers] == [
        (202, "applied", "ALLOW"), (403, "denied", "DENY"),
    ], answers  # fmt: skip
    assert answers[1][1]["reason_codes"] == ["ENTITLEMENT_EXCEEDED"]
    outcomes = [worker.wait_workflow(a["workflow_id"])["output"]["status"] for _, a in answers]
    assert outcomes == ["applied", "denied"]
    with worker.client(tokens["initech2"]) as c:
        running = [d for d in c.get("/v1/tenants/initech2/deployments").json() if d["state"] == "running"]
    assert len(running) == 1 and running[0]["spec"]["replicas"] == 10


def test_quota_increase_waits_for_approval_across_a_restart(worker: Worker, tokens: dict[str, str]) -> None:
    with worker.client(tokens["globex2"]) as c:
        r = c.post("/v1/tenants/globex2/quotas", json={"entitlements": {"H100-80GB": 10, "A100-40GB": 4}})
    assert r.status_code == 202 and r.json()["reason_codes"] == ["QUOTA_APPROVAL_REQUIRED"], r.text
    workflow_id = r.json()["workflow_id"]
    approval = worker.wait_approval("globex2")
    assert approval["id"] == workflow_id and approval["status"] == "pending"

    worker.kill9()
    worker.start()
    with worker.client(tokens["globex2"]) as c:
        pending = c.get("/v1/approvals").json()
        assert [a["id"] for a in pending] == [workflow_id]
        assert c.post(f"/v1/approvals/{workflow_id}", json={"approved": True}).status_code == 403
    worker.approve(workflow_id)
    wf = worker.wait_workflow(workflow_id)
    assert wf["output"]["status"] == "applied", wf
    with worker.client() as c:
        assert c.get("/v1/tenants/globex2").json()["policy"]["entitlements"]["H100-80GB"] == 10
        assert c.get("/v1/approvals").json() == []
    quota = [e for e in _effects(worker) if e["kind"] == "ResourceQuota" and e["namespace"] == "globex2-ml"]
    assert len(quota) == 2  # onboarding, then exactly one apply of the approved quota
    assert "approval.approved:" in _events(worker, "globex2")


def test_onboarding_killed_midway_resumes_with_each_step_once(worker: Worker) -> None:
    worker.kill9()
    worker.start(env={"PDP_LIFECYCLE_PAUSE_AT": "apply:kueue"})
    doc = tenant_doc("globex", "globex3", ["globex3-ml", "globex3-dev"])
    with worker.client() as c:
        r = c.post("/v1/tenants", json=doc)
        assert r.status_code == 202, r.text
    assert worker.wait_paused() == "apply:kueue"
    worker.kill9()
    worker.start()
    wf = worker.wait_workflow("onboard-globex3")
    assert wf["output"]["status"] == "active", wf
    applied = _counts(worker, "would_apply", {"globex3-ml", "globex3-dev", "globex3"})
    assert len(applied) == 2 * 6 + 2 and set(applied.values()) == {1}, applied  # 6 per namespace + CQ + PC
    events = _events(worker, "globex3")
    assert (
        events.count("tenant.transition:provisioning") == 1 and events.count("tenant.transition:active") == 1
    )
    assert audit.verify(Database(worker.database())) == []


def test_offboarding_killed_midway_ends_destroyed_certified_and_verifiable(worker: Worker) -> None:
    token = onboard(worker, tenant_doc("globex", "globex4", ["globex4-ml"]))
    worker.kill9()
    worker.start(env={"PDP_LIFECYCLE_PAUSE_AT": "delete:quota"})
    with worker.client(token) as c:
        r = c.post("/v1/tenants/globex4/offboard", json={"reason": "contract ended"})
        assert r.status_code == 202 and r.json()["outcome"] == "ALLOW", r.text
    assert worker.wait_paused() == "delete:quota"
    worker.kill9()
    worker.start()
    wf = worker.wait_workflow("offboard-globex4")
    assert wf["output"]["status"] == "offboarded", wf
    deleted = _counts(worker, "would_delete", {"globex4-ml", "globex4"})
    assert len(deleted) == 8 and set(deleted.values()) == {1}, deleted
    with worker.client() as c:
        assert c.get("/v1/tenants/globex4").json()["state"] == "offboarded"
        cert = c.get("/v1/tenants/globex4/certificate").json()
    assert "Namespace//globex4-ml" in cert["certificate"]["objects_would_be_destroyed"]
    with worker.client(token) as c:
        assert c.get("/v1/tenants/globex4").status_code == 401  # access revoked
    events = _events(worker, "globex4")
    for event in (
        "access.revoked:",
        "policy.withdrawn:",
        "certificate.issued:",
        "tenant.transition:offboarded",
    ):
        assert events.count(event) == 1, (event, events)
    archive = Path(wf["output"]["archive"])
    assert archive.exists() and "certificate.issued" in archive.read_text()
    assert archive.stat().st_mode & 0o077 == 0  # a tenant's archived trail is the owner's only
    out = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "lifecycle", "audit-verify", *worker.audit_verify_args()],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    # Two kill -9s in this test alone: the checkpoints (written after each commit) still vouch.
    assert out.returncode == 0 and "FAIL" not in out.stdout, out.stdout + out.stderr
    assert re.search(
        r"^ok: the audit trail verifies \(\d+ records; checkpointed to record \d+ in file:", out.stdout, re.M
    )
    # The archived trail carries its seal and verifies offline, with only the public key, and
    # against the checkpoints record by record.
    public = worker.root / "public.pem"
    public.write_text(httpx.get(f"{worker.url}/v1/certificates/public-key").json()["public_key_pem"])
    for checkpoints in ([], ["--checkpoints", worker.audit_sink]):
        out = subprocess.run(
            [sys.executable, "-m", "pdp.cli", "lifecycle", "audit-verify", "--file", str(archive),
             "--public-key", str(public), *checkpoints],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert out.returncode == 0 and "ok: the audit trail verifies" in out.stdout, out.stdout + out.stderr


def test_every_audit_record_of_an_offboarding_carries_its_decision_and_workflow(worker: Worker) -> None:
    """The `deployment.transition` records of the drain (running -> drained) carried neither;
    each record of a workflow step must lead back to the request and the decision it acted on."""
    token = onboard(worker, tenant_doc("globex", "globex8", ["globex8-ml"]))
    deploy(worker, "globex8", h100_deployment("llm", 1))
    with worker.client(token) as c:
        r = c.post("/v1/tenants/globex8/offboard", json={"reason": "contract ended"})
        assert r.status_code == 202 and r.json()["outcome"] == "ALLOW", r.text
    workflow = r.json()["workflow_id"]
    assert worker.wait_workflow(workflow)["output"]["status"] == "offboarded"
    with worker.client() as c:
        records = audit_records(c.get("/v1/audit", params={"tenant": "globex8"}).text)
    first = next(i for i, rec in enumerate(records) if rec["workflow_id"] == workflow)
    during = records[first:]
    drained = [r for r in during if r["event"] == "deployment.transition" and r["detail"]["to"] == "drained"]
    assert len(drained) == 1, during
    untraced = [
        (r["event"], r["decision_id"], r["workflow_id"])
        for r in during
        if not r["decision_id"] or r["workflow_id"] != workflow
    ]
    assert untraced == [], untraced


def test_failing_step_runs_the_compensations(worker: Worker) -> None:
    worker.kill9()
    worker.start(env={"PDP_LIFECYCLE_FAIL_AT": "apply:network"})
    with worker.client() as c:
        r = c.post("/v1/tenants", json=tenant_doc("globex", "globex5", ["globex5-ml"]))
        assert r.status_code == 202
    wf = worker.wait_workflow("onboard-globex5")
    assert wf["output"]["status"] == "failed"
    assert wf["output"]["compensated"] == ["priority", "kueue", "limits", "quota", "namespaces"]
    applied = _counts(worker, "would_apply", {"globex5-ml", "globex5"})
    deleted = _counts(worker, "would_delete", {"globex5-ml", "globex5"})
    assert applied and applied == deleted
    with worker.client() as c:
        assert c.get("/v1/tenants/globex5").json()["state"] == "failed"
    worker.kill9()
    worker.start()


def test_editing_one_audit_record_fails_verification_naming_it(worker: Worker) -> None:
    worker.stop()
    db = Database(worker.database())
    with db.write() as conn:
        record = conn.execute(sa.text("SELECT record FROM lc_audit WHERE seq = 7")).scalar_one()
        edited = {**json.loads(record), "actor": "mallory"}  # whoever record 7's actor was
        assert edited != json.loads(record)
        conn.execute(
            sa.text("UPDATE lc_audit SET record = :r WHERE seq = 7"),
            {"r": json.dumps(edited, sort_keys=True, separators=(",", ":"))},
        )
    db.close()
    out = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "lifecycle", "audit-verify", *worker.audit_verify_args()],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 1
    assert out.stdout.strip().splitlines() == [
        "FAIL audit record 7: content does not match its hash (edited?)",
        "first altered record: 7",
    ]

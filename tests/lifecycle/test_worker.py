"""The worker process stops promptly on SIGTERM whatever its workflows wait for (a human's approval,
an operator's resolution), and the waiting workflows resume on the next start: in Kubernetes a
worker that outlives its grace period is SIGKILLed on every rollout."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from pdp.lifecycle.storage.db import Database
from pdp.lifecycle.storage.effects import EffectLog
from pdp.substrate.dryrun import DryRunAdapter
from tests.lifecycle.harness import Worker, audit_records, incident_in_state, onboard, tenant_doc

GLOBEX = tenant_doc("globex", "globexq", ["globexq-ml"])
NODE = "eu-shared-1"  # a node of the example fleet: the dry-run adapter has no Node objects
STOP_WITHIN = 5.0


def _sigterm(worker: Worker) -> None:
    """SIGTERM the worker, which must exit cleanly within STOP_WITHIN seconds."""
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    try:
        code = worker.proc.wait(timeout=STOP_WITHIN)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker did not exit within {STOP_WITHIN} s of SIGTERM:\n{worker.log()}")
    assert code == 0, f"exit status {code}:\n{worker.log()}"


def _quota_applies(worker: Worker, namespace: str) -> int:
    db = Database(worker.database())
    try:
        effects = DryRunAdapter(EffectLog(db)).effects()
    finally:
        db.close()
    return sum(e["kind"] == "ResourceQuota" and e["namespace"] == namespace for e in effects)


def _events(worker: Worker, workflow_id: str) -> Counter[str]:
    """The audit events the workflow recorded, by name."""
    with worker.client() as c:
        r = c.get("/v1/audit")
        assert r.status_code == 200, r.text
    return Counter(rec["event"] for rec in audit_records(r.text) if rec["workflow_id"] == workflow_id)


@pytest.mark.timeout(300)
def test_sigterm_stops_the_worker_while_an_approval_and_an_incident_wait_and_both_resume(
    tmp_path: Path,
) -> None:
    worker = Worker(tmp_path, capacity_retry_schedule="")
    worker.start()
    try:
        token = onboard(worker, GLOBEX)
        with worker.client(token) as c:
            r = c.post("/v1/tenants/globexq/quotas", json={"entitlements": {"H100-80GB": 10}})
        assert r.status_code == 202 and r.json()["reason_codes"] == ["QUOTA_APPROVAL_REQUIRED"], r.text
        approval = worker.wait_approval("globexq")["id"]
        with worker.client() as c:
            r = c.post("/v1/incidents", json={"node": NODE, "cause": "xid 79", "xids": [79]})
            assert r.status_code == 202, r.text
        incident = r.json()["incident"]
        incident_in_state(worker, incident, "awaiting_resolution")

        _sigterm(worker)

        worker.start()
        with worker.client() as c:
            assert [a["id"] for a in c.get("/v1/approvals").json()] == [approval]
        incident_in_state(worker, incident, "awaiting_resolution")
        worker.approve(approval)
        with worker.client() as c:
            r = c.post(f"/v1/incidents/{incident}/resolve", json={"comment": "GPU replaced"})
            assert r.status_code == 202, r.text

        wf = worker.wait_workflow(approval)
        assert wf["status"] == "SUCCESS" and wf["output"]["status"] == "applied", wf
        assert incident_in_state(worker, incident, "resolved")["status"] == "SUCCESS"
        with worker.client() as c:
            assert c.get("/v1/tenants/globexq").json()["policy"]["entitlements"]["H100-80GB"] == 10
        # Each resumed workflow did its waited-for part once: one approval (and one apply of the
        # approved quota after onboarding's), one release.
        assert _quota_applies(worker, "globexq-ml") == 2
        request = _events(worker, approval)
        assert request["approval.approved"] == 1 and request["approval.expired"] == 0, request
        assert request["approval.escalated"] == 0, request
        incident_trail = _events(worker, incident)
        assert incident_trail["node.cordoned"] == 1 and incident_trail["node.released"] == 1, incident_trail

        # Nothing waits now: a stop is as prompt as ever.
        _sigterm(worker)
    finally:
        worker.stop()

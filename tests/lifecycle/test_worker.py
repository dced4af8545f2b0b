"""The worker process: it stops promptly on SIGTERM whatever its workflows wait for (a human's
approval, an operator's resolution), and the waiting workflows resume on the next start (in
Kubernetes a worker that outlives its grace period is SIGKILLed on every rollout); given only
--state, it keeps the checkpoints of its audit trail and decision log outside it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from pdp.integrity.signing import load_key, public_pem
from pdp.lifecycle.storage import audit
from pdp.lifecycle.storage.db import Database
from pdp.lifecycle.storage.effects import EffectLog
from pdp.substrate.dryrun import DryRunAdapter
from tests.lifecycle.harness import ROOT, Worker, audit_records, incident_in_state, onboard, tenant_doc

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


def _verify(env: dict[str, str], *argv: str) -> tuple[int, list[str]]:
    out = subprocess.run(
        [sys.executable, "-m", "pdp.cli", *argv],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120, env=env,
    )  # fmt: skip
    return out.returncode, out.stdout.strip().splitlines()


def _trusted(key: Path, to: Path) -> str:
    """The public half of a signing key, copied out of the state folder as an auditor keeps it."""
    to.write_text(public_pem(load_key(key).public_key()))
    return str(to)


@pytest.mark.timeout(300)
def test_given_only_state_checkpoints_are_kept_outside_it_and_tampering_is_still_named(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PDP_AUDIT_", "PDP_RECORDS_"))},
        "PDP_CHECKPOINT_HOME": str(home),
    }
    worker = Worker(tmp_path, audit_checkpoints="", capacity_retry_schedule="")  # no sink given
    worker.start(env={"PDP_CHECKPOINT_HOME": str(home)})
    try:
        onboard(worker, tenant_doc("globex", "globexk", ["globexk-ml"]))
    finally:
        worker.stop()
    state = tmp_path / "state"
    assert sorted(p.name for p in state.rglob("*checkpoints*")) == [], "checkpoints inside --state"
    [trail] = home.glob("*/audit-checkpoints.jsonl")
    [decisions] = home.glob("*/decisions.checkpoints.jsonl")
    assert trail.parent == decisions.parent  # one folder for the state folder
    assert trail.stat().st_mode & 0o777 == decisions.stat().st_mode & 0o777 == 0o600
    assert trail.parent.stat().st_mode & 0o777 == 0o700

    # The auditor gives the state folder and the trusted key; the checkpoints are found where the
    # worker put them, and an intact trail and log verify.
    audit_key = _trusted(state / "lifecycle" / "certificate-signing-key.pem", tmp_path / "audit.pem")
    records_key = _trusted(state / "records-signing-key.pem", tmp_path / "records.pem")
    audit_verify = ("lifecycle", "audit-verify", "--state", str(state), "--trusted-key", audit_key)
    records_verify = ("records", "verify", "--state", str(state), "--trusted-key", records_key)
    for argv in (audit_verify, records_verify):
        code, lines = _verify(env, *argv)
        assert code == 0 and lines[0].startswith("ok: "), lines

    # Someone who can rewrite the state folder edits a record of each: both are named.
    db = sa.create_engine(worker.database())
    with db.begin() as conn:
        rec = json.loads(conn.execute(sa.text("SELECT record FROM lc_audit WHERE seq = 2")).scalar_one())
        rec["actor"] = "mallory"
        conn.execute(sa.text("UPDATE lc_audit SET record = :r WHERE seq = 2"), {"r": audit.canonical(rec)})
    db.dispose()
    log = sqlite3.connect(state / "decisions.sqlite", isolation_level=None)
    log.execute("DROP TRIGGER decisions_no_update")
    log.execute("UPDATE decisions SET outcome = 'DENY' WHERE seq = 1")
    log.close()
    code, lines = _verify(env, *audit_verify)
    assert code == 1 and lines[-1] == "first altered record: 2", lines
    code, lines = _verify(env, *records_verify)
    assert code == 1 and lines[-1] == "first altered record: 1", lines

"""The lifecycle on PostgreSQL: DBOS system tables and the lifecycle tables in one database.
Runs when PDP_TEST_POSTGRES_URL names a role that may create databases (CI starts one)."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from pdp.lifecycle.storage import audit
from pdp.lifecycle.storage.db import Database
from pdp.lifecycle.storage.pools import PoolRecords
from tests.lifecycle.harness import ROOT, Worker, onboard, tenant_doc
from tests.lifecycle.workflows.test_concurrency import random_requests
from tests.postgres import requires_postgres

pytestmark = requires_postgres


def test_onboarding_and_an_approval_across_a_restart_on_postgres(pg_url: str, tmp_path: Path) -> None:
    worker = Worker(tmp_path, database_url=pg_url).start()
    try:
        token = onboard(worker, tenant_doc("globex", "globex-pg", ["globex-pg-ml"]))
        with worker.client(token) as c:
            r = c.post(
                "/v1/tenants/globex-pg/quotas", json={"entitlements": {"H100-80GB": 9, "A100-40GB": 4}}
            )
            assert r.status_code == 202, r.text
        workflow_id = r.json()["workflow_id"]
        worker.wait_approval("globex-pg")
        worker.kill9()
        worker.start()
        worker.approve(workflow_id)
        assert worker.wait_workflow(workflow_id)["output"]["status"] == "applied"
    finally:
        worker.stop()
    db = Database(worker.database().replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        assert audit.verify(db) == []
        events = [r["event"] for r in audit.records(db, "globex-pg")]
        assert events.count("approval.approved") == 1 and events.count("tenant.policy_updated") == 1
    finally:
        db.close()
    # Checkpointed across the kill -9 too: the auditor's check holds.
    out = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "lifecycle", "audit-verify", *worker.audit_verify_args(),
         "--database-url", worker.database().replace("postgresql://", "postgresql+psycopg://", 1)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.startswith("ok: the audit trail verifies"), out.stdout


def test_concurrent_requests_hold_the_entitlement_on_postgres(pg_url: str, tmp_path: Path) -> None:
    """The random concurrent run (tests/lifecycle/workflows/test_concurrency.py) with DBOS and the lifecycle
    tables on PostgreSQL: its queue partitions serialize the changes there too."""
    worker = Worker(tmp_path, database_url=pg_url, capacity_retry_schedule="", decision_wait="2").start()
    try:
        print(random_requests(worker, "racepg", seed=5))
    finally:
        worker.stop()


def test_racing_pool_claims_on_postgres_leave_each_node_to_one_pool(pg_url: str) -> None:
    # No process lock serializes PostgreSQL writers: the primary key of lc_pool_nodes decides.
    db = Database(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        records = PoolRecords(db)
        barrier = threading.Barrier(8)
        results: dict[str, list[str]] = {}

        def claim(i: int) -> None:
            carving = {"pool": f"p{i}-h100", "tenant": f"p{i}", "nodes": ["n1", "n2"]}
            barrier.wait()
            results[carving["pool"]] = records.claim([carving], f"wf-{i}")  # type: ignore[index]

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        winners = [pool for pool, taken in results.items() if taken == []]
        assert len(results) == 8 and len(winners) == 1, results
        assert [c["pool"] for c in records.active()] == winners
    finally:
        db.close()

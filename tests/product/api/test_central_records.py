"""The product API's decision records, central: the lifecycle's embedded PDP and another PDP
replica append to one PostgreSQL table; GET /v1/tenants/{t}/decisions shows both, to that tenant
only. Runs when PDP_TEST_POSTGRES_URL names a role that may create databases (CI starts one)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pdp.decision import Decision, Outcome
from pdp.records.log import DecisionLog, Integrity
from tests.lifecycle.harness import Worker, onboard, tenant_doc
from tests.postgres import requires_postgres

pytestmark = requires_postgres


def test_a_tenant_reads_its_decisions_from_every_replica(pg_url: str, tmp_path: Path) -> None:
    sink = f"file:{tmp_path / 'audit-host' / 'decisions.jsonl'}"
    key = tmp_path / "secret" / "records-signing-key.pem"
    worker = Worker(
        tmp_path, database_url=pg_url, records_url=pg_url, records_checkpoints=sink,
        records_signing_key=str(key),
    ).start()  # fmt: skip
    try:
        token = onboard(worker, tenant_doc("globex", "globex-pg", ["globex-pg-ml"]))
        replica = DecisionLog(
            tmp_path / "replica" / "decisions.sqlite",
            Integrity(url=pg_url, writer="pdp-eu-1", checkpoints=sink, signing_key=key),
        )
        replica.append(
            Decision(
                outcome=Outcome.DENY, reasons=(), bundle_revision="r", decision_id="from-eu-1",
                decided_at=datetime.now(UTC), evaluation_ms=0.2, kind="deploy_model", tenant="globex-pg",
            ),
            "sha256:x",
        )  # fmt: skip
        replica.close()
        with worker.client(token) as c:
            mine = c.get("/v1/tenants/globex-pg/decisions")
            assert mine.status_code == 200, mine.text
            records = mine.json()
            assert {r["tenant"] for r in records} == {"globex-pg"}
            writers = {r["writer"] for r in records}
            assert "pdp-eu-1" in writers and len(writers) >= 2, records  # the lifecycle's own too
            assert [r["decision_id"] for r in records if r["writer"] == "pdp-eu-1"] == ["from-eu-1"]
            assert c.get("/v1/tenants/acme-eu/decisions").status_code == 404  # not its tenant
            naive = c.get("/v1/tenants/globex-pg/decisions", params={"since": "2026-01-01T00:00:00"})
            assert naive.status_code == 422 and "since" in naive.text and "time zone" in naive.text
        with worker.client() as admin:
            assert len(admin.get("/v1/tenants/globex-pg/decisions").json()) == len(records)
    finally:
        worker.stop()

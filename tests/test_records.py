from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pdp.decision import Decision, Outcome, Reason
from pdp.records import DecisionLog

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _decision(n: int, tenant: str, at: datetime, outcome: Outcome = Outcome.ALLOW) -> Decision:
    reasons = (
        (Reason("RESIDENCY_VIOLATION", "nope", "gpupaas.residency"),) if outcome != Outcome.ALLOW else ()
    )
    return Decision(
        outcome=outcome,
        reasons=reasons,
        bundle_revision="rev1",
        decision_id=f"d{n}",
        decided_at=at,
        evaluation_ms=0.5,
        kind="deploy_model",
        tenant=tenant,
    )


def test_records_survive_reopen_and_filter_by_tenant_and_time(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite"
    log = DecisionLog(path)
    for n in range(6):
        tenant = "acme-eu" if n % 2 == 0 else "globex"
        outcome = Outcome.DENY if n == 2 else Outcome.ALLOW
        log.append(_decision(n, tenant, T0 + timedelta(minutes=n), outcome), f"sha256:{n}")
    log.close()

    reopened = DecisionLog(path)
    acme = reopened.query(tenant="acme-eu")
    assert [r.decision_id for r in acme] == ["d0", "d2", "d4"]
    assert acme[1].outcome == "DENY"
    assert acme[1].reasons == [
        {"code": "RESIDENCY_VIOLATION", "message": "nope", "policy": "gpupaas.residency"}
    ]
    assert acme[1].input_digest == "sha256:2" and acme[1].bundle_revision == "rev1"

    window = reopened.query(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=4))
    assert [r.decision_id for r in window] == ["d1", "d2", "d3"]
    # Times in another zone mean the same instants.
    cet = T0.astimezone(datetime.now().astimezone().tzinfo)
    assert [r.decision_id for r in reopened.query(until=cet + timedelta(minutes=1))] == ["d0"]


def test_records_are_append_only(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.sqlite")
    log.append(_decision(1, "acme-eu", T0), "sha256:1")
    log.flush()
    db = sqlite3.connect(tmp_path / "d.sqlite")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE decisions SET outcome = 'ALLOW'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM decisions")
    assert [r.decision_id for r in log.query()] == ["d1"]


def test_naive_times_are_refused(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.sqlite")
    with pytest.raises(ValueError, match="timezone-aware"):
        log.query(since=datetime(2026, 1, 1))


def test_records_reach_the_file_within_the_flush_period(tmp_path: Path) -> None:
    import time

    log = DecisionLog(tmp_path / "d.sqlite")
    log.append(_decision(1, "acme-eu", T0), "sha256:1")
    deadline = time.monotonic() + 2
    other = sqlite3.connect(tmp_path / "d.sqlite")
    while other.execute("SELECT count(*) FROM decisions").fetchone()[0] == 0:
        assert time.monotonic() < deadline, "the record was never written"
        time.sleep(0.01)
    log.close()

"""The decision log keeps each decision's intent (bounded, with retention) for `pdp replay`, covered
by the record's hash through its digest; a log from before keeps verifying."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pdp.decision import Decision, Outcome, canonical_intent, digest_of
from pdp.integrity import signing
from pdp.integrity.chain import GENESIS, link
from pdp.records.intents import IntentRetention, omitted
from pdp.records.log import DecisionLog, Integrity
from pdp.records.model import payload
from pdp.records.read import read_records, verify_log
from tests.records.test_records import T0

INTENT: dict[str, Any] = {"kind": "deploy_model", "tenant": "acme-eu", "region": "eu-west-1", "n": 0}


def _decide(
    log: DecisionLog, n: int, intent: dict[str, Any], at: datetime | None = None, principal: str | None = None
) -> None:
    decision = Decision(
        outcome=Outcome.ALLOW,
        reasons=(),
        bundle_revision="rev1",
        decision_id=f"d{n}",
        decided_at=at or datetime.now(UTC),  # kept intents older than 30 days are dropped
        evaluation_ms=0.5,
        kind=str(intent["kind"]),
        tenant=str(intent["tenant"]),
        constraints={"regions": ["eu-west-1"]},
    )
    text = canonical_intent(intent)
    log.append(decision, digest_of(text), text, principal)


def _kept(path: Path) -> dict[str, tuple[int, str | None]]:
    with sqlite3.connect(path) as db:
        return {
            r[0]: (r[1], r[2]) for r in db.execute("SELECT decision_id, size, intent FROM decision_intents")
        }


def _verify(tmp_path: Path, path: Path) -> list[str]:
    key = signing.load_key(tmp_path / "records-signing-key.pem").public_key()
    report = verify_log(path, Integrity().sink(path), key)  # the default sink, where the log wrote
    return [str(p) for p in report.problems]


def test_intents_are_kept_with_constraints_and_a_too_large_one_keeps_its_digest_only(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite"
    log = DecisionLog(path, Integrity(intents=IntentRetention(max_bytes=200)))
    omitted_before = omitted()._value.get()
    _decide(log, 1, INTENT)
    _decide(log, 2, {**INTENT, "padding": "x" * 500})
    log.close()
    kept = _kept(path)
    assert kept["d1"] == (len(canonical_intent(INTENT)), canonical_intent(INTENT))
    assert kept["d2"][1] is None and kept["d2"][0] > 500  # its size, no text
    assert omitted()._value.get() == omitted_before + 1
    records = read_records(path)
    assert records[0].constraints == {"regions": ["eu-west-1"]}
    assert records[1].input_digest == digest_of(canonical_intent({**INTENT, "padding": "x" * 500}))
    assert _verify(tmp_path, path) == []


def test_an_edited_intent_is_named_by_verify(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite"
    log = DecisionLog(path)
    for n in range(3):
        _decide(log, n, {**INTENT, "n": n})
    log.close()
    with sqlite3.connect(path) as db:  # the intents table has no trigger: retention deletes from it
        db.execute(
            "UPDATE decision_intents SET intent = replace(intent, 'eu-west-1', 'us-east-1') "
            "WHERE decision_id = 'd1'"
        )
    assert _verify(tmp_path, path) == [
        "decision record 2: its kept intent (decision d1) does not match the record's input_digest (edited?)"
    ]


def test_an_edited_constraint_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite"
    log = DecisionLog(path)
    _decide(log, 1, INTENT)
    log.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER decisions_no_update")
        db.execute("""UPDATE decisions SET constraints = '{"regions":["us-east-1"]}'""")
    assert _verify(tmp_path, path) == ["decision record 1: content does not match its hash (edited?)"]


def test_a_log_from_before_principals_verifies_and_chains_them_after(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite"
    log = DecisionLog(path)
    _decide(log, 1, INTENT)  # no front: no principal, hashed as records were before the column
    log.close()
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE decisions DROP COLUMN principal")  # the log as the version before wrote it
    assert [r.principal for r in read_records(path)] == [None]  # a reader before any writer
    log = DecisionLog(path)
    _decide(log, 2, INTENT, principal="tenant:acme-eu")
    log.close()
    assert [(r.decision_id, r.principal) for r in read_records(path)] == [
        ("d1", None),
        ("d2", "tenant:acme-eu"),
    ]
    assert _verify(tmp_path, path) == []


def test_an_edited_principal_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite"
    log = DecisionLog(path)
    _decide(log, 1, INTENT)
    _decide(log, 2, INTENT, principal="tenant:acme-eu")
    log.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER decisions_no_update")
        db.execute("UPDATE decisions SET principal = 'substrate:slurm' WHERE decision_id = 'd1'")
        db.execute("UPDATE decisions SET principal = NULL WHERE decision_id = 'd2'")
    assert _verify(tmp_path, path) == [
        "decision record 1: content does not match its hash (edited?)",
        "decision record 2: content does not match its hash (edited?)",
    ]


def test_retention_drops_old_and_surplus_intents_and_keeps_the_records(tmp_path: Path) -> None:
    path = tmp_path / "decisions.sqlite"
    now = datetime.now(UTC)
    log = DecisionLog(path, Integrity(intents=IntentRetention(max_days=1, max_count=3, prune_seconds=0)))
    _decide(log, 0, {**INTENT, "n": 0}, now - timedelta(days=3))  # past the age limit
    for n in range(1, 6):
        _decide(log, n, {**INTENT, "n": n}, now)
    log.flush()
    log._prune_intents()
    log.close()
    assert sorted(_kept(path)) == ["d3", "d4", "d5"]  # the newest three
    assert [r.decision_id for r in read_records(path)] == [f"d{n}" for n in range(6)]
    assert _verify(tmp_path, path) == []


def test_retention_values_are_checked() -> None:
    with pytest.raises(ValueError, match="max_days: must be >= 0"):
        IntentRetention(max_days=-1)


def test_a_log_from_before_intents_and_constraints_still_verifies_and_continues(tmp_path: Path) -> None:
    """Records hashed over the nine columns of before keep verifying once the log gains the
    constraints column and the intents table; new records chain after them."""
    path = tmp_path / "decisions.sqlite"
    old = (
        "d0", T0.isoformat(timespec="microseconds"), "acme-eu", "deploy_model", "ALLOW", "[]", "rev0",
        "sha256:0", 0.5,
    )  # fmt: skip
    with sqlite3.connect(path) as db:
        db.executescript(
            """CREATE TABLE decisions (seq INTEGER PRIMARY KEY AUTOINCREMENT,
            decision_id TEXT NOT NULL UNIQUE, decided_at TEXT NOT NULL, tenant TEXT NOT NULL,
            kind TEXT NOT NULL, outcome TEXT NOT NULL,
            reasons TEXT NOT NULL, bundle_revision TEXT NOT NULL, input_digest TEXT NOT NULL,
            evaluation_ms REAL NOT NULL, prev_hash TEXT NOT NULL DEFAULT '', hash TEXT NOT NULL DEFAULT '')"""
        )
        db.execute(
            "INSERT INTO decisions VALUES (1,?,?,?,?,?,?,?,?,?,?,?)",
            (*old, GENESIS, link(1, GENESIS, payload(old))),
        )
    log = DecisionLog(path)
    _decide(log, 1, INTENT)
    log.close()
    records = read_records(path)
    assert [(r.decision_id, r.constraints) for r in records] == [
        ("d0", None),
        ("d1", {"regions": ["eu-west-1"]}),
    ]
    assert list(_kept(path)) == ["d1"]
    assert _verify(tmp_path, path) == []


def test_the_decision_point_keeps_what_it_decided(tmp_path: Path) -> None:
    """The digest the point records is of exactly the kept text."""
    from pdp.point import DecisionPoint

    class Engine:
        def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
            return {"outcome": "ALLOW", "reasons": [], "bundle_revision": "r", "constraints": {"x": 1}}

    path = tmp_path / "decisions.sqlite"
    log = DecisionLog(path)
    intent = {"kind": "deploy_model", "tenant": "acme-eu", "model": "m", "region": "eu-west-1"}
    DecisionPoint(Engine(), log).decide(intent, __import__("pdp.point").point.DecideOptions(validated=True))
    log.close()
    (record,) = read_records(path)
    (size_text,) = _kept(path).values()
    assert size_text[1] is not None and digest_of(size_text[1]) == record.input_digest
    assert record.constraints == {"x": 1}


def test_bad_retention_options_are_named() -> None:
    import os
    import subprocess
    import sys

    from tests.records.test_records import ROOT

    env = {**os.environ, "PDP_RECORDS_INTENT_DAYS": "soon"}
    done = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "decide", "-"],
        cwd=ROOT,
        env=env,
        input="{}",
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "$PDP_RECORDS_INTENT_DAYS: expected a number, not 'soon'" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "decide", "--records-intent-count", "-1", "-"],
        cwd=ROOT, input="{}", capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 1 and "--records-intent-count: must be >= 0, not -1" in done.stderr

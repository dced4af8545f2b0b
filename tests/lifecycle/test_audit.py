from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from pdp.lifecycle import audit
from pdp.lifecycle.db import Database


def _trail(tmp_path: Path, n: int = 5) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'a.sqlite'}")
    with db.write() as conn:
        for i in range(n):
            audit.append(conn, f"k{i}", event="e", tenant="t", decision_id=f"d{i}", bundle_revision="r1")
        assert audit.append(conn, "k0", event="again", tenant="t") == 1  # idempotent per event key
    return db


def test_intact_trail_verifies_and_exports_links(tmp_path: Path) -> None:
    db = _trail(tmp_path)
    assert audit.verify(db) == []
    lines = [json.loads(line) for line in audit.export_jsonl(db).splitlines()]
    assert [r["seq"] for r in lines] == [1, 2, 3, 4, 5]
    assert lines[2]["decision_id"] == "d2" and lines[2]["prev_hash"] == lines[1]["hash"]


def test_edited_record_is_named(tmp_path: Path) -> None:
    db = _trail(tmp_path)
    with db.write() as conn:
        rec = json.loads(conn.execute(sa.text("SELECT record FROM lc_audit WHERE seq = 3")).scalar_one())
        rec["actor"] = "mallory"
        conn.execute(sa.text("UPDATE lc_audit SET record = :r WHERE seq = 3"), {"r": audit.canonical(rec)})
    problems = audit.verify(db)
    assert [p.seq for p in problems] == [3]
    assert "audit record 3" in str(problems[0]) and "edited" in str(problems[0])


def test_deleted_and_reordered_records_are_named(tmp_path: Path) -> None:
    db = _trail(tmp_path)
    with db.write() as conn:
        conn.execute(sa.text("DELETE FROM lc_audit WHERE seq = 2"))
    assert [p.seq for p in audit.verify(db)][:1] == [3]

    (tmp_path / "b").mkdir()
    db2 = _trail(tmp_path / "b")
    with db2.write() as conn:
        # Swap the contents of records 4 and 5 (keeping each row's own hash fields).
        r4, r5 = (
            conn.execute(sa.text(f"SELECT record FROM lc_audit WHERE seq = {s}")).scalar_one() for s in (4, 5)
        )
        conn.execute(sa.text("UPDATE lc_audit SET record = :r WHERE seq = 4"), {"r": r5})
        conn.execute(sa.text("UPDATE lc_audit SET record = :r WHERE seq = 5"), {"r": r4})
    assert {p.seq for p in audit.verify(db2)} == {4, 5}

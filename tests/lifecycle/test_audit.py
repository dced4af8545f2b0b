from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pdp.lifecycle import anchor, audit
from pdp.lifecycle.db import Database

from .harness import ROOT, Worker, onboard, tenant_doc


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


# The external anchor ---------------------------------------------------------------------------


def _anchored(tmp_path: Path, n: int) -> tuple[Database, anchor.Anchor]:
    """A trail of `n` records, one transaction each, anchored as the worker anchors it: the first
    is the anchor's own `audit.anchored`, then tenants "t" (even seqs) and "u" (odd ones)."""
    db = Database(f"sqlite:///{tmp_path / 'a.sqlite'}")
    keeper = anchor.Anchor(tmp_path / "audit-anchor.json", Ed25519PrivateKey.generate(), db)
    keeper.start()
    db.after_audit_commit = keeper.advance
    for i in range(n - 1):
        with db.write() as conn:
            audit.append(conn, f"k{i}", event="e", tenant="u" if i % 2 else "t")
    return db, keeper


def _delete_from(db: Database, seq: int) -> None:
    with db.write() as conn:
        conn.execute(sa.text("DELETE FROM lc_audit WHERE seq >= :s"), {"s": seq})


def _verify(db: Database, keeper: anchor.Anchor) -> anchor.Report:
    return anchor.verify(db, keeper.path, keeper.key.public_key())


def test_the_anchor_follows_every_commit_and_verifies(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 5)
    report = _verify(db, keeper)
    assert report.ok and report.notes == [] and report.anchor is not None
    assert (report.anchor.seq, report.chain_end) == (5, 5)
    assert report.anchor.hash == [r["hash"] for r in audit.records(db)][-1]
    assert list(tmp_path.glob(".*.tmp")) == []  # written through a temporary file, renamed


def test_deleting_the_last_record_is_named(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 5)
    assert audit.verify(db) == []
    _delete_from(db, 5)
    assert audit.verify(db) == []  # the chain alone cannot tell
    report = _verify(db, keeper)
    assert [str(p) for p in report.problems] == [
        "audit record 5: missing: the anchor is at record 5 but the chain ends at record 4: "
        "1 record deleted from the end after record 4 (record 5)"
    ]


def test_deleting_the_last_three_records_names_them(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 7)
    _delete_from(db, 5)
    [problem] = _verify(db, keeper).problems
    assert problem.seq == 7
    assert "3 records deleted from the end after record 4 (records 5-7)" in str(problem)


def test_a_crash_before_the_anchor_write_is_no_false_alarm(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 3)
    db.after_audit_commit = None  # committed, then the process died before re-anchoring
    for i in range(2):
        with db.write() as conn:
            audit.append(conn, f"late{i}", event="e", tenant="t")
    report = _verify(db, keeper)
    assert report.ok and report.anchor is not None and report.anchor.seq == 3
    assert report.notes and report.notes[0].startswith("2 record(s) after the anchor (record 3)")
    # The next start closes the window.
    again = anchor.Anchor(keeper.path, keeper.key, db)
    again.start()
    assert _verify(db, again).notes == [] and _verify(db, again).anchor == anchor.Head(5, _last_hash(db))


def _last_hash(db: Database) -> str:
    return str([r["hash"] for r in audit.records(db)][-1])


def test_an_edited_or_foreign_anchor_fails_its_signature(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 5)
    _delete_from(db, 4)
    # The forger moves the anchor back to hide the deletion; the signature no longer matches.
    doc = json.loads(keeper.path.read_text())
    inner = json.loads(doc["document"])
    inner.update(seq=3, hash=_last_hash(db))
    keeper.path.write_text(json.dumps({**doc, "document": audit.canonical(inner)}))
    assert [str(p) for p in _verify(db, keeper).problems] == [
        "audit trail: the audit anchor: the signature does not verify: the document was altered or "
        "signed by another key"
    ]
    # Re-signed with another key: named as such.
    other = Ed25519PrivateKey.generate()
    keeper.path.write_text(json.dumps(anchor.sign(anchor.Head(3, _last_hash(db)), other)))
    problems = [str(p) for p in _verify(db, keeper).problems]
    assert problems[0].startswith("audit trail: the audit anchor: signed with key") and len(problems) == 2
    # Removed: the trail cannot vouch for its end any more, and says so.
    keeper.path.unlink()
    assert [str(p) for p in _verify(db, keeper).problems] == [
        "audit trail: no anchor: records deleted from the end of the trail cannot be detected"
    ]


def test_a_removed_anchor_is_not_silently_recreated(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 6)
    assert next(r["event"] for r in audit.records(db)) == "audit.anchored"
    keeper.path.unlink()
    _delete_from(db, 5)
    restarted = anchor.Anchor(keeper.path, keeper.key, db)
    restarted.start()
    assert "the anchor file is missing, but this trail has been anchored since record 1" in restarted.frozen
    assert not keeper.path.exists()
    # An operator who has looked into it starts a new anchor; the trail records that.
    reanchored = anchor.Anchor(keeper.path, keeper.key, db, reanchor=True)
    reanchored.start()
    assert not reanchored.frozen and _verify(db, reanchored).ok
    last = list(audit.records(db))[-1]
    assert (last["seq"], last["event"], last["detail"]["why"]) == (
        5,
        "audit.anchored",
        "re-anchored by an operator",
    )


def test_a_restart_does_not_bless_a_truncated_trail(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 6)
    _delete_from(db, 5)
    restarted = anchor.Anchor(keeper.path, keeper.key, db)
    restarted.start()
    db.after_audit_commit = restarted.advance
    assert "audit record 6 (anchored) is gone or altered" in restarted.frozen
    # New records bring the chain past the anchored seq again: the anchored hash still differs.
    for i in range(3):
        with db.write() as conn:
            audit.append(conn, f"new{i}", event="e", tenant="t")
    assert json.loads(json.loads(keeper.path.read_text())["document"])["seq"] == 6
    [problem] = _verify(db, restarted).problems
    assert str(problem) == (
        "audit record 6: does not match the anchored hash (the trail was cut back and rewritten?)"
    )


def test_the_export_carries_the_anchor_and_verifies_offline(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 6)
    public = keeper.key.public_key()
    text = anchor.export_jsonl(db, keeper.path, key=keeper.key)
    lines = text.splitlines()
    assert json.loads(lines[-1])["audit_anchor"] == json.loads(keeper.path.read_text())
    assert anchor.verify_export(text, public).ok
    cut = "\n".join(lines[:4] + lines[-1:]) + "\n"  # records 5 and 6 removed from the archive
    problems = [str(p) for p in anchor.verify_export(cut, public).problems]
    assert any("2 records deleted from the end after record 4 (records 5-6)" in p for p in problems), problems
    assert any("sealed with 6 records, the last being record 6; it holds 4" in p for p in problems), problems

    # A tenant's trail (records 2, 4, 6): each record's hash, and its seal for what was cut.
    own = anchor.export_jsonl(db, keeper.path, "t", keeper.key)
    report = anchor.verify_export(own, public)
    assert report.ok, report.as_json()
    assert report.notes == ["the trail of tenant 't': links to other tenants' records cannot be checked"]
    edited = own.replace('"event":"e"', '"event":"x"', 1)
    assert [p.seq for p in anchor.verify_export(edited, public).problems] == [2]
    own_lines = own.splitlines()
    last_cut = "\n".join(own_lines[:2] + own_lines[-1:]) + "\n"
    assert [str(p) for p in anchor.verify_export(last_cut, public).problems] == [
        "audit record 6: missing: the export was sealed with 3 records, the last being record 6; it holds "
        "2, the last being record 4: 1 record(s) deleted from it"
    ]
    middle_cut = "\n".join(own_lines[:1] + own_lines[2:]) + "\n"
    assert not anchor.verify_export(middle_cut, public).ok
    # Without the seal (or with a forged one) a tenant's trail cannot vouch for what it holds.
    unsealed = anchor.export_jsonl(db, keeper.path, "t")
    assert [str(p) for p in anchor.verify_export(unsealed, public).problems] == [
        "audit trail: the export is not sealed: deletions from it cannot be detected"
    ]


def _cli_verify(worker: Worker) -> tuple[int, list[str]]:
    out = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "lifecycle", "audit-verify", "--state", str(worker.root / "state")],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.returncode, out.stdout.strip().splitlines()


def test_a_worker_killed_then_truncated_is_caught_across_restarts(tmp_path: Path) -> None:
    worker = Worker(tmp_path).start()
    try:
        onboard(worker, tenant_doc("globex", "globexa", ["globexa-ml"]))
        worker.kill9()
        code, lines = _cli_verify(worker)
        end = len(list(audit.records(Database(worker.database()))))
        assert (code, lines) == (
            0,
            [f"ok: the audit trail verifies ({end} records; anchored at record {end})"],
        )

        worker.start()  # a restart after kill -9 is no false alarm
        with worker.client() as c:
            verified = c.get("/v1/audit/verify").json()
        assert verified["ok"] and verified["anchor"]["seq"] == verified["chain_end"] == end, verified
        worker.kill9()

        db = Database(worker.database())
        _delete_from(db, end - 2)  # the last three records
        db.close()
        code, lines = _cli_verify(worker)
        assert code == 1 and lines == [
            f"FAIL audit record {end}: missing: the anchor is at record {end} but the chain ends at record "
            f"{end - 3}: 3 records deleted from the end after record {end - 3} (records {end - 2}-{end})"
        ], lines

        # Restarted and working on, the worker neither re-anchors the cut trail nor hides it.
        worker.start()
        onboard(worker, tenant_doc("globex", "globexb", ["globexb-ml"]))
        with worker.client() as c:
            verified = c.get("/v1/audit/verify").json()
        assert not verified["ok"] and verified["anchor"]["seq"] == end, verified
        assert verified["problems"] == [
            f"audit record {end}: does not match the anchored hash (the trail was cut back and rewritten?)"
        ], verified
        assert any("no longer advances the anchor" in n for n in verified["notes"]), verified
    finally:
        worker.stop()

    # An anchor edited to match the cut trail: its signature gives it away.
    path = tmp_path / "state" / "lifecycle" / "audit-anchor.json"
    doc = json.loads(path.read_text())
    inner = json.loads(doc["document"])
    inner["seq"] -= 1
    path.write_text(json.dumps({**doc, "document": audit.canonical(inner)}))
    code, lines = _cli_verify(worker)
    assert (
        code == 1
        and (
            "FAIL audit trail: the audit anchor: the signature does not verify: the document was altered or "
            "signed by another key"
        )
        in lines
    ), lines

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pdp.integrity import checkpoints, signing
from pdp.integrity.chain import GENESIS
from pdp.integrity.sinks import open_sink
from pdp.integrity.verify import Report
from pdp.lifecycle.storage import anchor, audit
from pdp.lifecycle.storage.db import Database
from pdp.net.pem import write_private_key
from tests.lifecycle.harness import ROOT, Worker, onboard, tenant_doc


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


# Checkpoints outside the state folder ----------------------------------------------------------


def _anchored(tmp_path: Path, n: int, sink: str = "") -> tuple[Database, anchor.Anchor]:
    """A trail of `n` records, one transaction each, checkpointed as the worker does it into a sink
    outside the state folder: the first is the `audit.anchored` record, then tenants "t" (even
    seqs) and "u" (odd ones)."""
    (tmp_path / "state").mkdir(exist_ok=True)
    db = Database(f"sqlite:///{tmp_path / 'state' / 'a.sqlite'}")
    target = open_sink(sink or f"file:{tmp_path / 'outside' / 'audit.jsonl'}")
    keeper = anchor.Anchor(target, Ed25519PrivateKey.generate(), db)
    keeper.start()
    db.after_audit_commit = keeper.after_commit
    for i in range(n - 1):
        with db.write() as conn:
            audit.append(conn, f"k{i}", event="e", tenant="u" if i % 2 else "t")
    return db, keeper


def _delete_from(db: Database, seq: int) -> None:
    with db.write() as conn:
        conn.execute(sa.text("DELETE FROM lc_audit WHERE seq >= :s"), {"s": seq})


def _verify(db: Database, keeper: anchor.Anchor) -> Report:
    return anchor.verify(db, keeper.sink, keeper.key.public_key())


def _problems(report: Report) -> list[str]:
    return [str(p) for p in report.problems]


def _rechain(db: Database, key: Ed25519PrivateKey | None = None, sink: str = "") -> None:
    """Recompute every hash from the records as they are (the forger's re-chain), optionally with
    checkpoints of the rewrite signed by `key` appended to `sink`."""
    hashes, prev = [], GENESIS
    with db.write() as conn:
        rows = conn.execute(sa.text("SELECT seq, record FROM lc_audit ORDER BY seq")).all()
        for seq, record in rows:
            digest = audit.record_hash(int(seq), prev, json.loads(record))
            conn.execute(
                sa.text("UPDATE lc_audit SET prev_hash = :p, hash = :h WHERE seq = :s"),
                {"p": prev, "h": digest, "s": seq},
            )
            prev = digest
            hashes.append(digest)
    if key is not None:
        forged = checkpoints.encode(anchor.LOG_NAME, 1, GENESIS, hashes, key)
        open_sink(sink).put(checkpoints.name(anchor.LOG_NAME, 1, len(hashes)) + "-forged", forged)


def _edit(db: Database, seq: int) -> None:
    with db.write() as conn:
        rec = json.loads(
            conn.execute(sa.text("SELECT record FROM lc_audit WHERE seq = :s"), {"s": seq}).scalar_one()
        )
        rec["actor"] = "mallory"
        conn.execute(
            sa.text("UPDATE lc_audit SET record = :r WHERE seq = :s"), {"r": audit.canonical(rec), "s": seq}
        )


@pytest.mark.parametrize("sink", ["file", "dir"])
def test_every_commit_is_checkpointed_and_verifies(tmp_path: Path, sink: str) -> None:
    spec = f"file:{tmp_path / 'outside' / 'audit.jsonl'}" if sink == "file" else f"dir:{tmp_path / 'outside'}"
    db, keeper = _anchored(tmp_path, 5, spec)
    report = _verify(db, keeper)
    assert report.ok and report.notes == [], report.as_json()
    assert (report.checkpointed, report.chain_end, report.checkpoints) == (5, 5, 5)
    assert report.checkpointed_hash == _last_hash(db)


def _last_hash(db: Database) -> str:
    return str([r["hash"] for r in audit.records(db)][-1])


def test_deleting_the_last_records_is_named(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 7)
    _delete_from(db, 5)
    assert audit.verify(db) == []  # the chain alone cannot tell
    assert _problems(_verify(db, keeper)) == [
        "audit record 5: missing: checkpoints cover records up to 7 but the audit trail ends at record 4: "
        "records 5-7 deleted from its end (truncated or wiped)"
    ]


def test_wiping_every_record_and_the_anchor_is_detected(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 6)
    _delete_from(db, 1)
    report = _verify(db, keeper)
    assert _problems(report) == [
        "audit record 1: missing: checkpoints cover records up to 6 but the audit trail ends at record 0: "
        "records 1-6 deleted from its end (truncated or wiped)"
    ]
    assert report.first_altered == 1


def test_an_edit_of_record_8_rechained_is_named_at_8_not_at_the_head(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 17)
    _edit(db, 8)
    _rechain(db)
    assert audit.verify(db) == []  # consistent again
    report = _verify(db, keeper)
    assert report.first_altered == 8, report.as_json()
    assert _problems(report)[0].startswith("audit record 8: differs from its checkpointed hash")
    assert report.notes == [
        "9 later record(s) differ from their checkpointed hashes too (up to record 17): they chain from "
        "the first"
    ]


def test_edit_rechain_and_a_new_key_with_resigned_checkpoints_is_detected(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 12)
    _edit(db, 8)
    forger = Ed25519PrivateKey.generate()
    _rechain(db, forger, keeper.sink.location)
    report = _verify(db, keeper)  # with the trusted key: the forger's checkpoints do not count
    assert report.first_altered == 8, report.as_json()
    problems = _problems(report)
    assert any("signed with key" in p and "not used (re-keyed?)" in p for p in problems), problems
    assert any(p.startswith("audit record 8: differs from its checkpointed hash") for p in problems), problems
    # The worker refuses a certificate key that does not match the configured trusted key.
    with pytest.raises(signing.KeyFileError, match="is not the trusted key's"):
        checkpoints.require_trusted(forger, keeper.key.public_key(), "the audit trail")


def test_a_rechain_checkpointed_with_the_stolen_key_is_detected(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 12)
    _edit(db, 8)
    _rechain(db, keeper.key, keeper.sink.location)
    report = _verify(db, keeper)
    assert report.first_altered == 8, report.as_json()
    assert _problems(report)[0].startswith("audit record 8: two checkpoints disagree on it")


def test_a_crash_before_the_checkpoint_is_no_false_alarm(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 3)
    db.after_audit_commit = None  # committed, then the process died before checkpointing
    for i in range(2):
        with db.write() as conn:
            audit.append(conn, f"late{i}", event="e", tenant="t")
    report = _verify(db, keeper)
    assert report.ok and report.checkpointed == 3, report.as_json()
    assert report.notes == [
        "2 record(s) after the last checkpoint (record 3): committed since, or before a crash; checked "
        "against the chain only"
    ]
    again = anchor.Anchor(keeper.sink, keeper.key, db)
    again.start()  # the next start closes the window
    report = _verify(db, again)
    assert report.ok and report.notes == [] and report.checkpointed == 5, report.as_json()


def test_a_lost_sink_is_not_silently_started_anew(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 6)
    assert next(r["event"] for r in audit.records(db)) == "audit.anchored"
    empty = open_sink(f"file:{tmp_path / 'elsewhere' / 'audit.jsonl'}")
    restarted = anchor.Anchor(empty, keeper.key, db)
    restarted.start()
    assert "holds no checkpoint of the audit log, which has been checkpointed before" in restarted.frozen
    assert list(empty.entries()) == []
    # An operator who has looked into it starts anew; the trail records that.
    reanchored = anchor.Anchor(empty, keeper.key, db, reanchor=True)
    reanchored.start()
    db.after_audit_commit = reanchored.after_commit
    assert not reanchored.frozen and _verify(db, reanchored).ok
    last = list(audit.records(db))[-1]
    assert (last["seq"], last["event"], last["detail"]["why"]) == (
        7,
        "audit.anchored",
        "re-anchored by an operator",
    )


def test_a_restart_does_not_bless_a_truncated_trail(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 6)
    _delete_from(db, 5)
    restarted = anchor.Anchor(keeper.sink, keeper.key, db)
    restarted.start()
    db.after_audit_commit = restarted.after_commit
    assert "record 6 (checkpointed in" in restarted.frozen and "is gone or altered" in restarted.frozen
    # New records bring the chain past the checkpointed seq again: their hashes differ.
    for i in range(3):
        with db.write() as conn:
            audit.append(conn, f"new{i}", event="e", tenant="t")
    report = _verify(db, restarted)
    assert report.first_altered == 5, report.as_json()
    assert _problems(report)[0].startswith("audit record 5: differs from its checkpointed hash")


def test_the_export_is_sealed_and_verifies_offline(tmp_path: Path) -> None:
    db, keeper = _anchored(tmp_path, 6)
    public = keeper.key.public_key()
    entries = list(keeper.sink.entries())
    text = anchor.export_jsonl(db, key=keeper.key)
    lines = text.splitlines()
    assert anchor.verify_export(text, public).ok
    assert anchor.verify_export(text, public, entries).ok
    cut = "\n".join(lines[:4] + lines[-1:]) + "\n"  # records 5 and 6 removed from the archive
    problems = _problems(anchor.verify_export(cut, public, entries))
    assert any("records 5-6 deleted from its end" in p for p in problems), problems
    assert any("sealed with 6 records, the last being record 6; it holds 4" in p for p in problems), problems

    # A tenant's trail (records 2, 4, 6): each record's hash, and its seal for what was cut.
    own = anchor.export_jsonl(db, "t", keeper.key)
    report = anchor.verify_export(own, public, entries)
    assert report.ok, report.as_json()
    assert report.notes == ["the trail of tenant 't': links to other tenants' records cannot be checked"]
    edited = own.replace('"event":"e"', '"event":"x"', 1)
    assert [p.seq for p in anchor.verify_export(edited, public).problems] == [2]
    # Edited and its own hash recomputed: only the checkpoints show it.
    doc = json.loads(own.splitlines()[0])
    doc["event"] = "x"
    record = {k: v for k, v in doc.items() if k not in ("seq", "prev_hash", "hash")}
    doc["hash"] = audit.record_hash(doc["seq"], doc["prev_hash"], record)
    rehashed = "\n".join([json.dumps(doc), *own.splitlines()[1:]]) + "\n"
    assert [p.seq for p in anchor.verify_export(rehashed, public, entries).problems] == [2]
    own_lines = own.splitlines()
    last_cut = "\n".join(own_lines[:2] + own_lines[-1:]) + "\n"
    assert _problems(anchor.verify_export(last_cut, public)) == [
        "audit record 6: missing: the export was sealed with 3 records, the last being record 6; it holds "
        "2, the last being record 4: 1 record(s) deleted from it"
    ]
    # Without the seal a tenant's trail cannot vouch for what it holds.
    unsealed = anchor.export_jsonl(db, "t")
    assert _problems(anchor.verify_export(unsealed, public)) == [
        "audit trail: the export is not sealed: deletions from it cannot be detected"
    ]


def _cli_verify(worker: Worker, *extra: str) -> tuple[int, list[str]]:
    out = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "lifecycle", "audit-verify", *worker.audit_verify_args(), *extra],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.returncode, out.stdout.strip().splitlines()


def test_a_worker_killed_wiped_and_rekeyed_is_caught_across_restarts(tmp_path: Path) -> None:
    worker = Worker(tmp_path).start()
    state = tmp_path / "state"
    try:
        onboard(worker, tenant_doc("globex", "globexa", ["globexa-ml"]))
        worker.kill9()
        code, lines = _cli_verify(worker)
        end = len(list(audit.records(Database(worker.database()))))
        assert code == 0 and len(lines) == 1, lines
        assert lines[0].startswith(
            f"ok: the audit trail verifies ({end} records; checkpointed to record {end} in"
        )

        # State files: owner-only.
        for path in (
            "lifecycle/lifecycle.sqlite",
            "lifecycle/dbos.sqlite",
            "lifecycle/certificate-signing-key.pem",
        ):
            assert (state / path).stat().st_mode & 0o777 == 0o600, path
        assert (state / "lifecycle").stat().st_mode & 0o777 == 0o700
        assert (tmp_path / "audit-host" / "audit-checkpoints.jsonl").stat().st_mode & 0o777 == 0o600

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
            f"FAIL audit record {end - 2}: missing: checkpoints cover records up to {end} but the audit "
            f"trail ends at record {end - 3}: records {end - 2}-{end} deleted from its end "
            "(truncated or wiped)",
            f"first altered record: {end - 2}",
        ], lines

        # Restarted and working on, the worker neither checkpoints the cut trail nor hides it.
        worker.start()
        onboard(worker, tenant_doc("globex", "globexb", ["globexb-ml"]))
        with worker.client() as c:
            verified = c.get("/v1/audit/verify").json()
        assert not verified["ok"] and verified["first_altered"] == end - 2, verified
        assert any("no longer advances the anchor" in n for n in verified["notes"]), verified
        worker.stop()

        # Everything in the state folder wiped, a new worker key minted: caught all the same.
        db = Database(worker.database())
        _delete_from(db, 1)
        db.close()
        key_path = state / "lifecycle" / "certificate-signing-key.pem"
        key_path.unlink()
        write_private_key(key_path, Ed25519PrivateKey.generate())
        code, lines = _cli_verify(worker)
        assert code == 1 and lines[-1] == "first altered record: 1", lines
        # ... and a worker told which key to trust refuses to start with the new one.
        trusted = tmp_path / "audit-host" / "trusted.pem"
        with pytest.raises(RuntimeError, match="is not the trusted key's"):
            Worker(tmp_path, audit_trusted_key=str(trusted)).start()
    finally:
        worker.stop()


def test_audit_verify_refuses_trust_inside_the_state_folder(tmp_path: Path) -> None:
    _, keeper = _anchored(tmp_path, 3)
    inside = tmp_path / "state" / "trusted.pem"
    inside.write_text(signing.public_pem(keeper.key.public_key()))
    out = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "lifecycle", "audit-verify", "--state", str(tmp_path / "state"),
         "--checkpoints", keeper.sink.location, "--trusted-key", str(inside)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 1 and "is inside the state folder" in out.stdout, out.stdout

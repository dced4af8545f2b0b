from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pdp.decision import Decision, Outcome, Reason
from pdp.integrity import checkpoints, signing
from pdp.integrity.chain import GENESIS, link
from pdp.integrity.sinks import open_sink
from pdp.integrity.verify import Report
from pdp.net.pem import write_private_key
from pdp.records.log import SIGNING_KEY, DecisionLog, Integrity, payload
from pdp.records.read import read_records, verify_log

ROOT = Path(__file__).resolve().parents[2]
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
    reopened.close()
    # Read-only, without opening the log for writing.
    assert [r.decision_id for r in read_records(path, tenant="globex")] == ["d1", "d3", "d5"]


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
    log.close()


def test_naive_times_are_refused(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.sqlite")
    with pytest.raises(ValueError, match="timezone-aware"):
        log.query(since=datetime(2026, 1, 1))
    log.close()


def test_records_reach_the_file_within_the_flush_period(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.sqlite")
    log.append(_decision(1, "acme-eu", T0), "sha256:1")
    deadline = time.monotonic() + 10
    other = sqlite3.connect(tmp_path / "d.sqlite")
    while other.execute("SELECT count(*) FROM decisions").fetchone()[0] == 0:
        assert time.monotonic() < deadline, "the record was never written"
        time.sleep(0.01)
    log.close()


# Tamper evidence -------------------------------------------------------------------------------


@dataclass
class Deployment:
    """A decision log as deployed: its state folder, and outside it the checkpoint sink and the
    trusted public key (the half of the signing key an auditor holds)."""

    state: Path
    outside: Path
    sink_spec: str

    @property
    def log_path(self) -> Path:
        return self.state / "decisions.sqlite"

    @property
    def trusted_path(self) -> Path:
        return self.outside / "records-trusted.pem"

    def open(self, **changes: object) -> DecisionLog:
        settings = {"checkpoints": self.sink_spec, "checkpoint_seconds": 0.0, **changes}
        return DecisionLog(self.log_path, Integrity(**settings))  # type: ignore[arg-type]

    def write(self, n: int, first: int = 0, batch: int = 3) -> None:
        log = self.open()
        for i in range(first, first + n):
            outcome = Outcome.DENY if i % 4 == 1 else Outcome.ALLOW
            log.append(_decision(i, f"tenant-{i % 3}", T0 + timedelta(seconds=i), outcome), f"sha256:{i}")
            if i % batch == batch - 1:
                log.flush()  # several commits, so several checkpoints
        log.close()
        if not self.trusted_path.exists():
            key = signing.load_key(self.state / SIGNING_KEY)
            self.trusted_path.write_text(signing.public_pem(key.public_key()))

    def verify(self) -> Report:
        trusted = signing.load_public_key(self.trusted_path)
        return verify_log(self.log_path, open_sink(self.sink_spec), trusted)

    def sql(self, *statements: str) -> None:
        """What someone who can write the state folder does to the database."""
        db = sqlite3.connect(self.log_path, isolation_level=None)
        for statement in statements:
            db.execute(statement)
        db.close()

    def rechain(self, key: Ed25519PrivateKey | None = None) -> None:
        """Recompute every hash from the rows as they are now (the forger's re-chain); with `key`,
        also write checkpoints of the rewritten log signed with it, in the state folder (where the
        default sink was once kept) and appended to the outside one (appending is what the worker
        may do)."""
        db = sqlite3.connect(self.log_path, isolation_level=None)
        db.execute("DROP TRIGGER IF EXISTS decisions_no_update")
        rows = db.execute(
            "SELECT seq, decision_id, decided_at, tenant, kind, outcome, reasons, bundle_revision,"
            " input_digest, evaluation_ms, constraints FROM decisions ORDER BY seq"
        ).fetchall()
        prev, hashes = GENESIS, []
        for new_seq, row in enumerate(rows, 1):
            digest = link(new_seq, prev, payload(tuple(row[1:])))
            db.execute(
                "UPDATE decisions SET seq = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (new_seq, prev, digest, row[0]),
            )
            prev = digest
            hashes.append(digest)
        db.close()
        if key is not None and hashes:
            forged = checkpoints.encode("decisions", 1, GENESIS, hashes, key)
            for spec in (f"file:{self.state / 'decisions.checkpoints.jsonl'}", self.sink_spec):
                open_sink(spec).put(checkpoints.name("decisions", 1, len(hashes)) + "-forged", forged)


@pytest.fixture(params=["file", "dir"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Deployment:
    outside = tmp_path / "audit-host"
    outside.mkdir()
    sink = (
        f"file:{outside / 'decisions.jsonl'}" if request.param == "file" else f"dir:{outside / 'decisions'}"
    )
    return Deployment(tmp_path / "state", outside, sink)


def _problems(report: Report) -> list[str]:
    return [str(p) for p in report.problems]


def test_an_intact_log_verifies_across_restarts(deployment: Deployment) -> None:
    deployment.write(10)
    deployment.write(7, first=10)  # a restart: the chain continues, so do the checkpoints
    report = deployment.verify()
    assert report.ok and report.notes == [], report.as_json()
    assert (report.chain_end, report.checkpointed, report.first_altered) == (17, 17, None)


def test_wiping_every_record_and_the_state_folder_is_detected(deployment: Deployment) -> None:
    deployment.write(12)
    for path in deployment.state.iterdir():  # the log, its key, the checkpoints kept beside it
        path.unlink()
    report = deployment.verify()
    assert _problems(report) == [
        "decision record 1: missing: checkpoints cover records up to 12 but the decision log ends at "
        "record 0: records 1-12 deleted from its end (truncated or wiped)"
    ]
    assert report.first_altered == 1
    # A PDP started on the wiped folder mints a new key and starts a new log: it does not
    # checkpoint it (the sink's checkpoints are not its key's), and the log is still caught.
    log = deployment.open()
    assert "is not signed by" in log.frozen or "signed with key" in log.frozen, log.frozen
    log.close()
    deployment.write(3, first=100)
    report = deployment.verify()
    assert not report.ok and report.first_altered == 1, report.as_json()
    assert _problems(report)[0].startswith("decision record 1: differs from its checkpointed hash")


def test_deleting_the_newest_records_is_named(deployment: Deployment) -> None:
    deployment.write(12)
    deployment.sql("DROP TRIGGER decisions_no_delete", "DELETE FROM decisions WHERE seq > 9")
    report = deployment.verify()
    assert _problems(report) == [
        "decision record 10: missing: checkpoints cover records up to 12 but the decision log ends at "
        "record 9: records 10-12 deleted from its end (truncated or wiped)"
    ]


def test_flipping_an_outcome_after_dropping_the_trigger_is_named(deployment: Deployment) -> None:
    deployment.write(12)
    before = {r.decision_id: r.outcome for r in read_records(deployment.log_path)}
    assert before["d5"] == "DENY"
    deployment.sql("DROP TRIGGER decisions_no_update", "UPDATE decisions SET outcome = 'ALLOW' WHERE seq = 6")
    report = deployment.verify()
    assert _problems(report) == ["decision record 6: content does not match its hash (edited?)"]
    assert report.first_altered == 6


def test_deleting_a_decision_row_is_named(deployment: Deployment) -> None:
    deployment.write(12)
    deployment.sql("DROP TRIGGER decisions_no_delete", "DELETE FROM decisions WHERE seq = 4")
    report = deployment.verify()
    assert _problems(report) == [
        "decision record 4: missing: record 4 deleted (the sequence jumps from 3 to 5)"
    ]
    # Deleted and the rest renumbered and re-chained: the chain is consistent again, the
    # checkpoints are not.
    deployment.rechain()
    report = deployment.verify()
    assert report.first_altered == 4, report.as_json()
    assert _problems(report)[0].startswith("decision record 4: differs from its checkpointed hash")


def test_an_edit_of_record_8_rechained_is_named_at_8(deployment: Deployment) -> None:
    deployment.write(20)
    deployment.sql(
        "DROP TRIGGER decisions_no_update",
        "UPDATE decisions SET outcome = 'DENY', reasons = '[]' WHERE seq = 8",
    )
    deployment.rechain()
    report = deployment.verify()
    assert _problems(report) == [
        f"decision record 8: differs from its checkpointed hash ({_span_of(report, 8)}): altered, or the "
        "log was rewritten and re-chained from here"
    ]
    assert report.first_altered == 8
    assert "12 later record(s) differ from their checkpointed hashes too (up to record 20)" in report.notes[0]


def _span_of(report: Report, seq: int) -> str:
    """The checkpoint a report names for `seq` (its time varies): read back from the message."""
    message = next(p.message for p in report.problems if p.seq == seq)
    return message[message.index("(") + 1 : message.index(")")]


def test_edit_rechain_and_a_new_key_with_resigned_checkpoints_is_detected(deployment: Deployment) -> None:
    deployment.write(20)
    deployment.sql(
        "DROP TRIGGER decisions_no_update", "UPDATE decisions SET tenant = 'mallory' WHERE seq = 8"
    )
    # The forger replaces the signing key in the state folder and signs checkpoints of the rewrite.
    new_key = Ed25519PrivateKey.generate()
    (deployment.state / SIGNING_KEY).unlink()
    write_private_key(deployment.state / SIGNING_KEY, new_key)
    deployment.rechain(new_key)
    report = deployment.verify()
    assert report.first_altered == 8, report.as_json()
    problems = _problems(report)
    assert any("signed with key" in p and "not used (re-keyed?)" in p for p in problems), problems
    assert any(p.startswith("decision record 8: differs from its checkpointed hash") for p in problems)
    # A PDP restarted on that state folder refuses a key the trusted key does not match.
    with pytest.raises(signing.KeyFileError, match="is not the trusted key's"):
        deployment.open(trusted_key=deployment.trusted_path)


def test_a_rechain_checkpointed_with_the_stolen_key_is_detected(deployment: Deployment) -> None:
    deployment.write(20)
    deployment.sql("DROP TRIGGER decisions_no_update", "UPDATE decisions SET outcome = 'DENY' WHERE seq = 8")
    # The forger holds the real signing key (it is in the state folder) and appends checkpoints of
    # the rewritten log: the earlier checkpoints cannot be removed from the sink.
    deployment.rechain(signing.load_key(deployment.state / SIGNING_KEY))
    report = deployment.verify()
    assert report.first_altered == 8, report.as_json()
    assert _problems(report)[0].startswith("decision record 8: two checkpoints disagree on it")


def test_a_restart_does_not_checkpoint_over_a_truncated_log(deployment: Deployment) -> None:
    deployment.write(12)
    deployment.sql("DROP TRIGGER decisions_no_delete", "DELETE FROM decisions WHERE seq > 10")
    log = deployment.open()
    assert "record 12 (checkpointed in" in log.frozen and "is gone or altered" in log.frozen
    for i in range(5):  # the log goes on, its checkpoints do not
        log.append(_decision(100 + i, "t", T0), "sha256:x")
    log.close()
    report = deployment.verify()
    assert not report.ok and report.first_altered == 11, report.as_json()


# A PDP process writing decisions: log, sink, name, count, checkpoint seconds, close|crash.
_WRITER = """
import os, sys
from datetime import UTC, datetime
from pdp.decision import Decision, Outcome
from pdp.records.log import DecisionLog, Integrity
path, sink, name, n, seconds, end = sys.argv[1:]
log = DecisionLog(path, Integrity(sink, checkpoint_seconds=float(seconds)))
for i in range(int(n)):
    log.append(Decision(outcome=Outcome.DENY if i % 2 else Outcome.ALLOW, reasons=(), bundle_revision="r",
                        decision_id=f"{name}-{i}", decided_at=datetime.now(UTC), evaluation_ms=float(i),
                        kind="k", tenant=name), "x")
    if i % 25 == 0:
        log.flush()
log.flush()
if end == "crash":
    os._exit(0)  # committed, never checkpointed: no close
log.close()
"""


def test_records_committed_before_a_crash_are_checkpointed_at_the_next_start(
    deployment: Deployment,
) -> None:
    deployment.write(6)
    # A PDP that commits decisions and is killed before its (periodic) checkpoint.
    args = [str(deployment.log_path), deployment.sink_spec, "late", "4", "3600", "crash"]
    subprocess.run([sys.executable, "-c", _WRITER, *args], cwd=ROOT, check=True, timeout=120)
    report = deployment.verify()
    assert report.ok and report.checkpointed == 6 and report.chain_end == 10, report.as_json()
    assert report.notes == [
        "4 record(s) after the last checkpoint (record 6): committed since, or before a crash; checked "
        "against the chain only"
    ]
    deployment.open().close()  # the next start closes the window
    report = deployment.verify()
    assert report.ok and report.notes == [] and report.checkpointed == 10, report.as_json()


def test_concurrent_writer_processes_keep_one_verifiable_chain(deployment: Deployment) -> None:
    deployment.write(1)  # the key, and the trusted copy of its public half
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WRITER,
                str(deployment.log_path),
                deployment.sink_spec,
                f"w{i}",
                "400",
                "0.05",
                "close",
            ],
            cwd=ROOT,
        )
        for i in range(3)
    ]
    assert [w.wait(timeout=300) for w in writers] == [0, 0, 0]
    report = deployment.verify()
    assert report.ok and report.notes == [], report.as_json()
    assert (report.chain_end, report.checkpointed) == (1201, 1201)
    tenants = [r.tenant for r in read_records(deployment.log_path, limit=2000)]
    assert sorted(tenants.count(f"w{i}") for i in range(3)) == [400, 400, 400]


def test_state_files_are_owner_only(tmp_path: Path) -> None:
    state = tmp_path / "state" / "pdp"
    deployment = Deployment(state, tmp_path, f"file:{tmp_path / 'sink' / 'decisions.jsonl'}")
    deployment.write(5)
    log = deployment.open()  # open: the WAL and shared-memory files exist now
    log.append(_decision(99, "t", T0), "x")
    log.flush()
    for name in ("decisions.sqlite", "decisions.sqlite-wal", "decisions.sqlite-shm", SIGNING_KEY):
        assert (state / name).stat().st_mode & 0o777 == 0o600, name
    assert state.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700  # created for the log, so private too
    assert (tmp_path / "sink" / "decisions.jsonl").stat().st_mode & 0o777 == 0o600
    log.close()
    # A database an earlier version left 0644 is narrowed when opened.
    os.chmod(state / "decisions.sqlite", 0o644)
    deployment.open().close()
    assert (state / "decisions.sqlite").stat().st_mode & 0o777 == 0o600


def test_a_log_from_before_chaining_is_chained_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "state" / "decisions.sqlite"
    path.parent.mkdir()
    old = sqlite3.connect(path)
    old.executescript(
        """
        CREATE TABLE decisions (seq INTEGER PRIMARY KEY AUTOINCREMENT, decision_id TEXT NOT NULL UNIQUE,
          decided_at TEXT NOT NULL, tenant TEXT NOT NULL, kind TEXT NOT NULL, outcome TEXT NOT NULL,
          reasons TEXT NOT NULL, bundle_revision TEXT NOT NULL, input_digest TEXT NOT NULL,
          evaluation_ms REAL NOT NULL);
        CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decision records are append-only'); END;
        INSERT INTO decisions VALUES (1, 'old1', '2026-01-01T00:00:00.000000+00:00', 't', 'k', 'ALLOW', '[]',
          'r', 'x', 1.5);
        """
    )
    old.close()
    deployment = Deployment(path.parent, tmp_path, f"file:{tmp_path / 'sink.jsonl'}")
    deployment.write(3, first=10)
    report = deployment.verify()
    assert report.ok and report.chain_end == 4 and report.checkpointed == 4, report.as_json()
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        deployment.sql("UPDATE decisions SET outcome = 'DENY'")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDP_RECORDS_")}
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", "records", *args],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=120, env=env,
    )  # fmt: skip


def test_pdp_records_verify_needs_trust_held_outside_the_state_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    deployment = Deployment(tmp_path / "state", outside, f"file:{outside / 'decisions.jsonl'}")
    outside.mkdir()
    deployment.write(9)
    state = ["--state", str(deployment.state)]
    trust = ["--checkpoints", deployment.sink_spec, "--trusted-key", str(deployment.trusted_path)]
    out = _cli("verify", *state, *trust)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith(
        f"ok: the decision log verifies (9 records; checkpointed to record 9 in {deployment.sink_spec}; key "
    )

    # Without a trusted key, or with one (or the checkpoints) inside the state folder: refused.
    out = _cli("verify", *state, "--checkpoints", deployment.sink_spec)
    assert out.returncode == 1 and out.stdout.startswith("FAIL no trusted key: give --trusted-key PEM")
    inside = deployment.state / "trusted.pem"
    inside.write_text(deployment.trusted_path.read_text())
    out = _cli("verify", *state, "--checkpoints", deployment.sink_spec, "--trusted-key", str(inside))
    assert out.returncode == 1 and "is inside the state folder" in out.stdout, out.stdout
    default_sink = f"file:{deployment.state / 'decisions.checkpoints.jsonl'}"
    out = _cli("verify", *state, "--checkpoints", default_sink, "--trusted-key", str(deployment.trusted_path))
    assert out.returncode == 1 and "are inside the state folder" in out.stdout, out.stdout

    # The public half of the signing key, printed for the auditor.
    out = _cli("public-key", *state)
    assert out.returncode == 0 and out.stdout == deployment.trusted_path.read_text()

    deployment.sql("DROP TRIGGER decisions_no_update", "UPDATE decisions SET outcome = 'DENY' WHERE seq = 8")
    deployment.rechain()
    out = _cli("verify", *state, *trust)
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[0].startswith("FAIL decision record 8: differs from its checkpointed hash"), lines
    assert lines[-1] == "first altered record: 8"
    # Listing still works (read-only).
    listed = _cli(*state, "--tenant", "tenant-2")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 3


def test_sinks_never_replace_a_checkpoint(tmp_path: Path) -> None:
    folder = open_sink(f"dir:{tmp_path / 'cps'}")
    folder.put("decisions-000000000003-000000000001", b'{"a":1}')
    with pytest.raises(Exception, match="exists already; not replaced"):
        folder.put("decisions-000000000003-000000000001", b'{"a":2}')
    assert list(folder.entries()) == [b'{"a":1}']
    assert (tmp_path / "cps" / "decisions-000000000003-000000000001.json").stat().st_mode & 0o777 == 0o400

    appended = open_sink(f"file:{tmp_path / 'cps.jsonl'}")
    appended.put("a", b'{"a":1}')
    appended.put("b", b'{"b":2}')
    with (tmp_path / "cps.jsonl").open("ab") as fh:
        fh.write(b'{"torn')  # a crash in the middle of a write
    assert list(appended.entries()) == [b'{"a":1}', b'{"b":2}'] and appended.torn()
    assert list(appended.backwards()) == [b'{"b":2}', b'{"a":1}']
    appended.put("c", b'{"c":3}')  # the next write starts a line of its own
    assert list(appended.entries()) == [b'{"a":1}', b'{"b":2}', b'{"torn', b'{"c":3}']
    assert not appended.torn()
    assert list(appended.backwards()) == [b'{"c":3}', b'{"torn', b'{"b":2}', b'{"a":1}']
    with pytest.raises(Exception, match="no s3:// sink in this build"):
        open_sink("s3://bucket/decisions")

"""The decision log: every decision appended to a durable local SQLite file, hash-chained, with
signed checkpoints in a sink outside the state folder.

OPA's own decision logs are lost if it crashes before shipping them, so the PDP keeps its own
record, queryable by tenant and time. Triggers refuse UPDATE and DELETE, but whoever can write the
file can drop them: what makes an edit, a deletion or a wipe show is the chain and its checkpoints
(`pdp/integrity/`, `pdp records verify`, docs/records.md).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pdp.decision import Decision
from pdp.integrity import signing
from pdp.integrity.chain import GENESIS, Row, link
from pdp.integrity.checkpoints import Checkpointer, require_trusted
from pdp.integrity.files import inside, private_database
from pdp.integrity.sinks import Sink, SinkError, open_sink, sink_path
from pdp.integrity.verify import Problem, Report, verify

LOG_NAME = "decisions"
SIGNING_KEY = "records-signing-key.pem"

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id     TEXT NOT NULL UNIQUE,
    decided_at      TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    reasons         TEXT NOT NULL,
    bundle_revision TEXT NOT NULL,
    input_digest    TEXT NOT NULL,
    evaluation_ms   REAL NOT NULL,
    prev_hash       TEXT NOT NULL DEFAULT '',
    hash            TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS decisions_by_tenant_time ON decisions (tenant, decided_at);
CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (decided_at);
CREATE TABLE IF NOT EXISTS decision_log_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'decision records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'decision records are append-only'); END;
"""
_FIELDS = (
    "decision_id, decided_at, tenant, kind, outcome, reasons, bundle_revision, input_digest, evaluation_ms"
)
_INSERT = f"INSERT INTO decisions (seq, {_FIELDS}, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
_ROWS = f"SELECT seq, {_FIELDS}, prev_hash, hash FROM decisions WHERE seq > ? ORDER BY seq"
# A committed write per decision was a sixth of a decision's cost under load (profile in
# docs/performance.md); rows are written by one thread in batches instead, at most this long after
# their decision. query() and close() drain what is pending first.
_FLUSH_SECONDS = 0.02


def _timestamp(moment: datetime) -> str:
    """Fixed-width UTC text, so SQL string comparison is time order."""
    if moment.tzinfo is None:
        raise ValueError("decision log times must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def payload(fields: tuple[Any, ...]) -> bytes:
    """What a record's hash covers: its stored values in column order, as a JSON array."""
    return orjson.dumps(fields)


@dataclass(frozen=True)
class DecisionRecord:
    decision_id: str
    decided_at: str
    tenant: str
    kind: str
    outcome: str
    reasons: list[dict[str, Any]]
    bundle_revision: str
    input_digest: str
    evaluation_ms: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Integrity:
    """Where the log's checkpoints go and which key signs them."""

    # A sink outside the state folder (file:PATH, dir:PATH); empty: next to the log, which only
    # catches accidents (whoever rewrites the log can rewrite it), and says so at start.
    checkpoints: str = ""
    signing_key: Path | None = None  # default: next to the log (records-signing-key.pem)
    # When given, the signing key must be its private half (else its checkpoints would not verify).
    trusted_key: Path | None = None
    # Checkpoint a log that has been checkpointed before although the sink holds none of it.
    adopt: bool = False
    # Committed records are checkpointed at least this often (and when the log closes).
    checkpoint_seconds: float = 1.0

    def sink(self, log_path: Path) -> Sink:
        return open_sink(
            self.checkpoints or f"file:{log_path.with_name(log_path.stem + '.checkpoints.jsonl')}"
        )

    def key_path(self, log_path: Path) -> Path:
        return self.signing_key or log_path.parent / SIGNING_KEY


def _select(
    conn: sqlite3.Connection,
    tenant: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[DecisionRecord]:
    clauses, args = [], []
    if tenant is not None:
        clauses.append("tenant = ?")
        args.append(tenant)
    if since is not None:
        clauses.append("decided_at >= ?")
        args.append(_timestamp(since))
    if until is not None:
        clauses.append("decided_at < ?")
        args.append(_timestamp(until))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT {_FIELDS} FROM decisions {where} ORDER BY seq LIMIT ?"
    rows = conn.execute(sql, [*args, limit]).fetchall()
    return [DecisionRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8]) for r in rows]


def _rows(conn: sqlite3.Connection, after: int) -> Iterator[Row]:
    for r in conn.execute(_ROWS, (after,)):
        yield int(r[0]), payload(tuple(r[1:10])), str(r[10]), str(r[11])


def _migrate(db: sqlite3.Connection) -> None:
    """Chain the records of a log written before records were chained (trusted as found; the first
    checkpoint then vouches for them). The triggers are created again after it."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(decisions)")}
    if "hash" in columns and not db.execute("SELECT 1 FROM decisions WHERE hash = '' LIMIT 1").fetchone():
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for column in ("prev_hash", "hash"):
            if column not in columns:
                db.execute(f"ALTER TABLE decisions ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
        db.execute("DROP TRIGGER IF EXISTS decisions_no_update")
        prev, chained = GENESIS, 0
        for seq, body, _, _ in list(_rows(db, 0)):
            digest = link(seq, prev, body)
            db.execute("UPDATE decisions SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
            prev, chained = digest, chained + 1
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if chained:
        log.warning("decision log: %d records written before records were chained, chained as found", chained)


class _Source:
    """The log as its checkpointer reads it (ChainSource)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def hash_at(self, seq: int) -> str | None:
        if seq == 0:
            return GENESIS
        found = self.db.execute("SELECT hash FROM decisions WHERE seq = ?", (seq,)).fetchone()
        return None if found is None else str(found[0])

    def rows_after(self, seq: int) -> Iterator[Row]:
        return _rows(self.db, seq)

    def was_checkpointed(self) -> bool:
        return (
            self.db.execute("SELECT 1 FROM decision_log_meta WHERE key = 'checkpointed'").fetchone()
            is not None
        )

    def mark_checkpointed(self, sink: Sink) -> None:
        at = datetime.now(UTC).isoformat()
        self.db.execute(
            "INSERT OR IGNORE INTO decision_log_meta (key, value) VALUES ('checkpointed', ?)",
            (json.dumps({"since": at, "sink": sink.location}),),
        )


class DecisionLog:
    def __init__(self, path: Path | str, integrity: Integrity | None = None) -> None:
        path = Path(path)
        integrity = integrity or Integrity()
        private_database(path)
        self.path = path
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before its checkpoint is written (after it), so a power cut
            # cannot leave a checkpoint naming records the database lost.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=10000")  # other processes of `serve --workers`
            self._db.executescript(_SCHEMA)
            _migrate(self._db)
            self._db.executescript(_TRIGGERS)
        key = signing.load_or_create_key(integrity.key_path(path))
        trusted = signing.load_public_key(integrity.trusted_key) if integrity.trusted_key else None
        require_trusted(key, trusted, f"decision log {path}")
        sink = integrity.sink(path)
        local = sink_path(sink)
        if local is not None and inside(local, path.parent):
            # Unconfigured, the default: `pdp serve` and the lifecycle worker warn about it once.
            log.log(
                logging.WARNING if integrity.checkpoints else logging.INFO,
                "decision log %s: checkpoints in %s, inside its own folder: they catch accidents, not "
                "someone who can rewrite that folder; give a sink outside it (--records-checkpoints)",
                path,
                sink.location,
            )
        self.checkpoints = Checkpointer(LOG_NAME, sink, key, interval=integrity.checkpoint_seconds)
        with self._lock:
            self.checkpoints.start(_Source(self._db), adopt=integrity.adopt)
        self._sink_error = ""
        self._pending: list[tuple[Any, ...]] = []
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="decision-log", daemon=True)
        self._writer.start()

    @property
    def frozen(self) -> str:
        """Why checkpoints stopped (the log does not continue its checkpointed chain), or ''."""
        return self.checkpoints.frozen

    def _write_loop(self) -> None:
        while not self._closed:
            self._wake.wait(_FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
                with self._lock:
                    self._checkpoint(self.checkpoints.due)
            except Exception:  # never let the writer die: the next round tries again
                log.exception("decision log %s: write failed; retrying", self.path)

    def _checkpoint(self, step: Any) -> None:
        """Run a checkpointer step; a sink that fails is logged (once per distinct error) and the
        checkpoint is kept for the next write."""
        try:
            step()
            self._sink_error = ""
        except (OSError, SinkError) as exc:
            if str(exc) != self._sink_error:
                log.error("decision log %s: checkpoint not written (kept for the next): %s", self.path, exc)
            self._sink_error = str(exc)

    def _commit(self, rows: list[tuple[Any, ...]]) -> tuple[int, str, list[str]]:
        """Chain and insert `rows` after the current head in one transaction; (first seq, the hash
        before it, their hashes). IMMEDIATE: the head read and the inserts are one write, whatever
        other processes append."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            head = self._db.execute("SELECT seq, hash FROM decisions ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
            first, before = seq + 1, prev
            chained, hashes = [], []
            for row in rows:
                seq += 1
                digest = link(seq, prev, payload(row))
                chained.append((seq, *row, prev, digest))
                hashes.append(digest)
                prev = digest
            self._db.executemany(_INSERT, chained)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return first, before, hashes

    def flush(self) -> None:
        """Write every pending record now, in one transaction."""
        with self._lock:
            with self._pending_lock:
                rows, self._pending = self._pending, []
            if not rows:
                return
            try:
                first, before, hashes = self._commit(rows)
            except BaseException:
                with self._pending_lock:
                    self._pending[:0] = rows  # kept, in order, for the next round
                raise
            self._checkpoint(lambda: self.checkpoints.add(first, before, hashes))

    def append(self, decision: Decision, input_digest: str) -> None:
        row = (
            decision.decision_id,
            _timestamp(decision.decided_at),
            decision.tenant,
            decision.kind,
            decision.outcome.value,
            json.dumps([r.__dict__ for r in decision.reasons]),
            decision.bundle_revision,
            input_digest,
            float(decision.evaluation_ms),  # a REAL column gives back a float: hashed as one
        )
        with self._pending_lock:
            self._pending.append(row)

    def query(
        self,
        *,
        tenant: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[DecisionRecord]:
        """Decisions oldest first, optionally of one tenant and within [since, until)."""
        self.flush()
        with self._lock:
            return _select(self._db, tenant, since, until, limit)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._writer.join(timeout=5)
        self.flush()
        with self._lock:
            self._checkpoint(self.checkpoints.flush)
            self._db.close()


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def read_records(
    path: Path,
    *,
    tenant: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> list[DecisionRecord]:
    """Query a decision log without opening it for writing (no key, no checkpoint, no writer)."""
    conn = _read_only(path)
    try:
        return _select(conn, tenant, since, until, limit)
    finally:
        conn.close()


def verify_log(path: Path, sink: Sink, trusted: Ed25519PublicKey) -> Report:
    """The decision log at `path` against its checkpoints in `sink` and the trusted key. A missing
    file is an empty log (a wiped one shows against the checkpoints)."""
    entries = list(sink.entries())  # first: see integrity.verify
    torn = sink.torn()

    def check(rows: Iterable[Row]) -> Report:
        return verify(
            entries, rows, trusted, log=LOG_NAME, subject="decision record", whole="decision log", torn=torn
        )

    if not path.exists():
        report = check([])
        report.notes.insert(0, f"there is no decision log at {path}")
        return report
    conn = _read_only(path)
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}
        rows = _rows(conn, 0) if "hash" in columns else iter(())
        report = check(rows)
        if "hash" not in columns:
            report.problems.insert(
                0, Problem(0, f"{path} is not a chained decision log", whole="decision log")
            )
        return report
    finally:
        conn.close()

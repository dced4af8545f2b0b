"""The decision log in a local SQLite file: one chain, shared by the processes of `serve --workers`.

Triggers refuse UPDATE and DELETE, but whoever can write the file can drop them: what makes an
edit, a deletion or a wipe show is the chain and its checkpoints (docs/records.md).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pdp.integrity.chain import GENESIS, Row, link
from pdp.integrity.files import private_database
from pdp.integrity.sinks import Sink
from pdp.records.intents import SQLITE_INSERT, SQLITE_SCHEMA, IntentRetention, IntentRow
from pdp.records.model import (
    FIELDS,
    LATE_COLUMNS,
    DecisionRecord,
    payload,
    readable_fields,
    record_of,
    timestamp,
)

log = logging.getLogger("pdp.records.log")

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
    hash            TEXT NOT NULL DEFAULT '',
    constraints     TEXT,
    principal       TEXT
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
_INSERT = f"INSERT INTO decisions (seq, {FIELDS}, prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"


def select(
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
        args.append(timestamp(since))
    if until is not None:
        clauses.append("decided_at < ?")
        args.append(timestamp(until))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT {fields(conn)} FROM decisions {where} ORDER BY seq LIMIT ?"
    rows = conn.execute(sql, [*args, limit]).fetchall()
    return [record_of(r) for r in rows]


def fields(conn: sqlite3.Connection, prefix: str = "") -> str:
    """FIELDS to SELECT from this log (a late column it lacks read as NULL)."""
    return readable_fields({r[1] for r in conn.execute("PRAGMA table_info(decisions)")}, prefix)


def rows(conn: sqlite3.Connection, after: int) -> Iterator[Row]:
    sql = f"SELECT seq, {fields(conn)}, prev_hash, hash FROM decisions WHERE seq > ? ORDER BY seq"
    for r in conn.execute(sql, (after,)):
        yield int(r[0]), payload(tuple(r[1:12])), str(r[12]), str(r[13])


def add_late_columns(db: sqlite3.Connection) -> None:
    """A log from before records kept constraints or principals gets the columns (NULL in its
    old records)."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(decisions)")}
    for column in LATE_COLUMNS:
        if column not in columns:
            db.execute(f"ALTER TABLE decisions ADD COLUMN {column} TEXT")


def intent_mismatches(conn: sqlite3.Connection) -> Iterator[tuple[int, str, str, str]]:
    """(seq, decision_id, record's digest, kept intent) of every kept intent, for verification."""
    yield from conn.execute(
        "SELECT d.seq, d.decision_id, d.input_digest, i.intent FROM decision_intents i "
        "JOIN decisions d ON d.decision_id = i.decision_id WHERE i.intent IS NOT NULL ORDER BY d.seq"
    )


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
        for seq, body, _, _ in list(rows(db, 0)):
            digest = link(seq, prev, body)
            db.execute("UPDATE decisions SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, seq))
            prev, chained = digest, chained + 1
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if chained:
        log.warning("decision log: %d records written before records were chained, chained as found", chained)


class SqliteStore:
    """The log file, opened for writing (ChainStore)."""

    def __init__(self, path: Path) -> None:
        private_database(path)
        self.location = str(path)
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before its checkpoint is written (after it), so a power cut
        # cannot leave a checkpoint naming records the database lost.
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=10000")  # other processes of `serve --workers`
        self.db.executescript(_SCHEMA)
        add_late_columns(self.db)
        self.db.executescript(SQLITE_SCHEMA)
        _migrate(self.db)
        self.db.executescript(_TRIGGERS)

    def commit(
        self, batch: list[tuple[Any, ...]], intents: list[IntentRow], *, resent: bool = False
    ) -> tuple[int, str, list[str]]:
        """IMMEDIATE: the head read and the inserts are one write, whatever other processes append.

        `resent`: the batch may have been committed already, its answer lost (a committer process
        that died after COMMIT, pdp/records/committer.py): only its records not in the file are
        chained and inserted (the kept intents are inserted OR IGNORE anyway)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if resent:
                batch = self._not_committed(batch)
            head = self.db.execute("SELECT seq, hash FROM decisions ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
            first, before = seq + 1, prev
            chained, hashes = [], []
            for row in batch:
                seq += 1
                digest = link(seq, prev, payload(row))
                chained.append((seq, *row, prev, digest))
                hashes.append(digest)
                prev = digest
            self.db.executemany(_INSERT, chained)
            self.db.executemany(SQLITE_INSERT, intents)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return first, before, hashes

    def _not_committed(self, batch: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The rows of `batch` whose decision id (their first column) the log does not hold."""
        present: set[str] = set()
        for start in range(0, len(batch), 500):  # below SQLite's limit of bound parameters
            ids = [row[0] for row in batch[start : start + 500]]
            marks = ",".join("?" * len(ids))
            query = f"SELECT decision_id FROM decisions WHERE decision_id IN ({marks})"
            present.update(found for (found,) in self.db.execute(query, ids))
        return [row for row in batch if row[0] not in present]

    def prune_intents(self, retention: IntentRetention) -> int:
        """Drop the kept intents past the age and count limits (the records stay)."""
        pruned = 0
        if retention.max_days:
            cutoff = timestamp(datetime.now(UTC) - timedelta(days=retention.max_days))
            pruned += self.db.execute("DELETE FROM decision_intents WHERE decided_at < ?", (cutoff,)).rowcount
        if retention.max_count:
            pruned += self.db.execute(
                "DELETE FROM decision_intents WHERE rowid <= (SELECT rowid FROM decision_intents "
                "ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
                (retention.max_count,),
            ).rowcount
        return pruned

    def select(
        self, tenant: str | None, since: datetime | None, until: datetime | None, limit: int
    ) -> list[DecisionRecord]:
        return select(self.db, tenant, since, until, limit)

    def hash_at(self, seq: int) -> str | None:
        if seq == 0:
            return GENESIS
        found = self.db.execute("SELECT hash FROM decisions WHERE seq = ?", (seq,)).fetchone()
        return None if found is None else str(found[0])

    def rows_after(self, seq: int) -> Iterator[Row]:
        return rows(self.db, seq)

    def was_checkpointed(self) -> bool:
        found = self.db.execute("SELECT 1 FROM decision_log_meta WHERE key = 'checkpointed'").fetchone()
        return found is not None

    def mark_checkpointed(self, sink: Sink) -> None:
        at = datetime.now(UTC).isoformat()
        self.db.execute(
            "INSERT OR IGNORE INTO decision_log_meta (key, value) VALUES ('checkpointed', ?)",
            (json.dumps({"since": at, "sink": sink.location}),),
        )

    def close(self) -> None:
        self.db.close()


def read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)

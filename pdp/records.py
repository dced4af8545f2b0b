"""The decision log: every decision appended to a durable local SQLite file.

OPA's own decision logs are lost if it crashes before shipping them, so the PDP keeps its own
record. Rows are append-only (triggers refuse UPDATE and DELETE) and queryable by tenant and time.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pdp.decision import Decision

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
    evaluation_ms   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_by_tenant_time ON decisions (tenant, decided_at);
CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (decided_at);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'decision records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'decision records are append-only'); END;
"""


def _timestamp(moment: datetime) -> str:
    """Fixed-width UTC text, so SQL string comparison is time order."""
    if moment.tzinfo is None:
        raise ValueError("decision log times must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


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


_INSERT = (
    "INSERT INTO decisions (decision_id, decided_at, tenant, kind, outcome, reasons,"
    " bundle_revision, input_digest, evaluation_ms) VALUES (?,?,?,?,?,?,?,?,?)"
)
# A committed write per decision was a sixth of a decision's cost under load (profile in
# docs/performance.md); rows are written by one thread in batches instead, at most this long after
# their decision. query() and close() drain what is pending first.
_FLUSH_SECONDS = 0.02


class DecisionLog:
    def __init__(self, path: Path | str) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self._pending: list[tuple[Any, ...]] = []
        self._pending_lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="decision-log", daemon=True)
        self._writer.start()

    def _write_loop(self) -> None:
        while not self._closed:
            self._wake.wait(_FLUSH_SECONDS)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Write every pending record now, in one transaction."""
        with self._lock:
            with self._pending_lock:
                rows, self._pending = self._pending, []
            if rows:
                self._db.execute("BEGIN")
                self._db.executemany(_INSERT, rows)
                self._db.execute("COMMIT")

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
            decision.evaluation_ms,
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
        self.flush()
        sql = (
            "SELECT decision_id, decided_at, tenant, kind, outcome, reasons, bundle_revision,"
            f" input_digest, evaluation_ms FROM decisions {where} ORDER BY seq LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, [*args, limit]).fetchall()
        return [
            DecisionRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8]) for r in rows
        ]

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._writer.join(timeout=5)
        self.flush()
        with self._lock:
            self._db.close()

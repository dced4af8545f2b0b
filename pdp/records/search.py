"""Searching the decision log (the PDP's own records, every decision of every entry point): by
decision id, tenant, outcome, reason code and time, newest first.

The search reads the store the log writes: its SQLite file through a read-only connection, or the
central PostgreSQL records (every writer's). Filters are SQL parameters, never text pasted into
the statement; a reason code matches an element of the record's `reasons` array by its `code`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pdp.records.log import DecisionLog
from pdp.records.model import FIELDS, DecisionRecord, record_of, timestamp
from pdp.records.sqlite import read_only

OUTCOMES = ("ALLOW", "DENY", "NEEDS_APPROVAL")
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Search:
    decision_id: str | None = None
    tenant: str | None = None
    outcome: str | None = None
    reason: str | None = None  # a reason code, e.g. RESIDENCY_VIOLATION
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    limit: int = 200

    def __post_init__(self) -> None:
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise ValueError(f"outcome: {self.outcome!r} is not one of {', '.join(OUTCOMES)}")
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit: {self.limit} is not between 1 and {MAX_LIMIT}")
        for name in ("since", "until"):
            moment = getattr(self, name)
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"{name}: {moment.isoformat()} has no time zone")

    def _clauses(self, placeholder: str, reason_clause: str) -> tuple[list[str], list[Any]]:
        clauses, args = [], []
        for column, op, value in (
            ("decision_id", "=", self.decision_id),
            ("tenant", "=", self.tenant),
            ("outcome", "=", self.outcome),
            ("decided_at", ">=", timestamp(self.since) if self.since else None),
            ("decided_at", "<", timestamp(self.until) if self.until else None),
        ):
            if value is not None:
                clauses.append(f"{column} {op} {placeholder}")
                args.append(value)
        if self.reason is not None:
            clauses.append(reason_clause)
            args.append(self.reason)
        return clauses, args


_SQLITE_REASON = (
    "EXISTS (SELECT 1 FROM json_each(decisions.reasons) AS r WHERE json_extract(r.value, '$.code') = ?)"
)
# The column is JSON text; its elements are objects with a "code" member.
_POSTGRES_REASON = "EXISTS (SELECT 1 FROM jsonb_array_elements(reasons::jsonb) AS r WHERE r->>'code' = %s)"


def _in_sqlite(conn: sqlite3.Connection, q: Search) -> list[DecisionRecord]:
    clauses, args = q._clauses("?", _SQLITE_REASON)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT {FIELDS} FROM decisions {where} ORDER BY seq DESC LIMIT ?"
    rows = conn.execute(sql, [*args, q.limit]).fetchall()
    return [record_of(r) for r in rows]


def _in_postgres(url: str, q: Search) -> list[DecisionRecord]:
    from pdp.records import postgres

    clauses, args = q._clauses("%s", _POSTGRES_REASON)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = (
        f"SELECT {FIELDS}, writer FROM pdp_decision_records {where} "
        "ORDER BY decided_at DESC, writer, seq DESC LIMIT %s"
    )
    conn = postgres.connect(url)
    try:
        found = conn.execute(sql, [*args, q.limit]).fetchall()
    finally:
        conn.close()
    return [record_of(r, r[11]) for r in found]


def search(log: DecisionLog, q: Search) -> list[DecisionRecord]:
    """The records of `log` that match every filter of `q`, newest first, at most `q.limit`."""
    log.flush()  # what was decided a moment ago is searchable now
    if log.integrity.url:
        return _in_postgres(log.integrity.url, q)
    conn = read_only(log.path)
    try:
        return _in_sqlite(conn, q)
    finally:
        conn.close()

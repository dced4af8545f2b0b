"""The audit trail: append-only and hash-chained.

Each record holds the previous record's hash and its own hash over its content, position and that
link, so an edited, reordered or deleted record breaks the chain at a record `verify` names.
Appends are idempotent per event key: a workflow step that is re-run after a crash records once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from pdp.lifecycle.db import AUDIT_APPENDED, Database

GENESIS = "0" * 64
# PostgreSQL advisory lock id serializing appends (any fixed 64-bit number unique to this use).
APPEND_LOCK = 0x6770_7061_6173_0001


def canonical(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def record_hash(seq: int, prev_hash: str, record: Mapping[str, Any]) -> str:
    return hashlib.sha256(f"{seq}|{prev_hash}|{canonical(record)}".encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    seq: int
    message: str

    def __str__(self) -> str:
        # seq 0: about the trail as a whole (its anchor), not one record
        return f"audit record {self.seq}: {self.message}" if self.seq else f"audit trail: {self.message}"


def append(
    conn: sa.Connection,
    event_key: str,
    *,
    event: str,
    tenant: str,
    actor: str = "system",
    workflow_id: str = "",
    decision_id: str = "",
    bundle_revision: str = "",
    detail: Mapping[str, Any] | None = None,
) -> int:
    """Append one record inside the caller's write transaction; returns its seq (the existing one
    when this event key was already recorded)."""
    if conn.dialect.name == "postgresql":
        # The chain is one sequence: appenders take turns (until their commit), each reading the
        # head the previous one committed. SQLite's writers already take turns (db.write).
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPEND_LOCK})
    existing = conn.execute(
        sa.text("SELECT seq FROM lc_audit WHERE event_key = :k"), {"k": event_key}
    ).scalar()
    if existing is not None:
        return int(existing)
    head = conn.execute(sa.text("SELECT seq, hash FROM lc_audit ORDER BY seq DESC LIMIT 1")).first()
    seq, prev = (int(head[0]) + 1, str(head[1])) if head else (1, GENESIS)
    record = {
        "at": datetime.now(UTC).isoformat(),
        "event": event,
        "tenant": tenant,
        "actor": actor,
        "workflow_id": workflow_id,
        "decision_id": decision_id,
        "bundle_revision": bundle_revision,
        "detail": dict(detail or {}),
    }
    # seq is the primary key: were two appends ever to compute the same seq, one would fail.
    conn.execute(
        sa.text("INSERT INTO lc_audit (seq, event_key, record, prev_hash, hash) VALUES (:s, :k, :r, :p, :h)"),
        {"s": seq, "k": event_key, "r": canonical(record), "p": prev, "h": record_hash(seq, prev, record)},
    )
    conn.info[AUDIT_APPENDED] = True  # the database re-anchors the chain once this commits
    return seq


def records(db: Database, tenant: str | None = None) -> Iterator[dict[str, Any]]:
    """The records in order, each with seq, prev_hash and hash (for JSON lines export)."""
    with db.read() as conn:
        rows = conn.execute(sa.text("SELECT seq, record, prev_hash, hash FROM lc_audit ORDER BY seq")).all()
    for seq, record, prev, digest in rows:
        doc = json.loads(record)
        if tenant is None or doc.get("tenant") == tenant:
            yield {"seq": int(seq), **doc, "prev_hash": prev, "hash": digest}


def verify_rows(rows: list[tuple[int, str, str, str]]) -> list[Problem]:
    """Check a chain of (seq, record JSON, prev_hash, hash) rows in seq order. Pure."""
    problems: list[Problem] = []
    prev = GENESIS
    expected_seq = 1
    for seq, record, prev_hash, digest in rows:
        if seq != expected_seq:
            problems.append(Problem(seq, f"out of sequence: expected record {expected_seq} (deleted?)"))
        if prev_hash != prev:
            problems.append(Problem(seq, "does not link to the record before it (deleted or reordered?)"))
        if record_hash(seq, prev_hash, json.loads(record)) != digest:
            problems.append(Problem(seq, "content does not match its hash (edited?)"))
        prev, expected_seq = digest, seq + 1
    return problems


def verify(db: Database) -> list[Problem]:
    with db.read() as conn:
        rows = conn.execute(sa.text("SELECT seq, record, prev_hash, hash FROM lc_audit ORDER BY seq")).all()
    return verify_rows([(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows])


def export_jsonl(db: Database, tenant: str | None = None) -> str:
    return "".join(canonical(r) + "\n" for r in records(db, tenant))

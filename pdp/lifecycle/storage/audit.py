"""The audit trail: append-only and hash-chained (`pdp/integrity/chain.py`).

Each record holds the previous record's hash and its own hash over its content, position and that
link, so an edited, reordered or deleted record breaks the chain at a record `verify` names; a
rewritten and re-chained trail shows against its checkpoints (`anchor.py`).
Appends are idempotent per event key: a workflow step that is re-run after a crash records once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from pdp.integrity import verify as integrity
from pdp.integrity.chain import GENESIS, Row, link
from pdp.integrity.chain import canonical as canonical
from pdp.lifecycle.storage.db import AUDIT_APPENDED, Database

__all__ = ["GENESIS", "Problem", "append", "canonical", "record_hash", "records", "verify", "verify_rows"]
# PostgreSQL advisory lock id serializing appends (any fixed 64-bit number unique to this use).
APPEND_LOCK = 0x6770_7061_6173_0001


def record_hash(seq: int, prev_hash: str, record: Mapping[str, Any]) -> str:
    return link(seq, prev_hash, canonical(record).encode())


@dataclass(frozen=True)
class Problem(integrity.Problem):
    # seq 0: about the trail as a whole (its checkpoints), not one record
    subject: str = "audit record"
    whole: str = "audit trail"


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
    digest = record_hash(seq, prev, record)
    # seq is the primary key: were two appends ever to compute the same seq, one would fail.
    conn.execute(
        sa.text("INSERT INTO lc_audit (seq, event_key, record, prev_hash, hash) VALUES (:s, :k, :r, :p, :h)"),
        {"s": seq, "k": event_key, "r": canonical(record), "p": prev, "h": digest},
    )
    # Checkpointed once this commits (the database hands the list to the anchor).
    conn.info.setdefault(AUDIT_APPENDED, []).append((seq, prev, digest))
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


def chain_rows(db: Database) -> list[Row]:
    """The trail as the chain verifier reads it: (seq, canonical record bytes, prev_hash, hash)."""
    with db.read() as conn:
        rows = conn.execute(sa.text("SELECT seq, record, prev_hash, hash FROM lc_audit ORDER BY seq")).all()
    return [(int(r[0]), canonical(json.loads(r[1])).encode(), str(r[2]), str(r[3])) for r in rows]


def verify(db: Database) -> list[Problem]:
    """The chain alone (no checkpoints: a re-chained or truncated trail passes; see anchor.verify)."""
    return verify_rows([(seq, body.decode(), prev, digest) for seq, body, prev, digest in chain_rows(db)])


def export_jsonl(db: Database, tenant: str | None = None) -> str:
    return "".join(canonical(r) + "\n" for r in records(db, tenant))

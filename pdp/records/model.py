"""What a decision record is, and what the decision log needs of the database that stores it.

Two stores keep records: a local SQLite file (`pdp/records/sqlite.py`, the embedded default) and
PostgreSQL shared by PDP replicas (`pdp/records/postgres.py`, one chain per writer). Both store the
same columns, hashed the same way (`payload`), so a record verifies wherever it is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from pdp.integrity.chain import Row
from pdp.integrity.sinks import Sink
from pdp.records.intents import IntentRetention, IntentRow

# The stored columns a record's hash covers, in this order. `constraints` (the decision's
# constraints as JSON) came later: NULL in records written before it, which are hashed without it.
# `principal` (who asked, as a decision front authenticated them: pdp/api/auth.py) came after it:
# NULL in records written before it and in decisions no front stood before (in-process callers),
# hashed without it, so every record written before verifies as it always did.
FIELDS = (
    "decision_id, decided_at, tenant, kind, outcome, reasons, bundle_revision, input_digest, evaluation_ms, "
    "constraints, principal"
)
LATE_COLUMNS = ("constraints", "principal")


_last_timestamp: tuple[datetime | None, str] = (None, "")


def timestamp(moment: datetime) -> str:
    """Fixed-width UTC text, so SQL string comparison is time order."""
    global _last_timestamp
    last = _last_timestamp  # the decisions of a batch share one time: written once
    if last[0] is moment:
        return last[1]
    if moment.tzinfo is None:
        raise ValueError("decision log times must be timezone-aware")
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    _last_timestamp = (moment, text)
    return text


def json_text(value: Any) -> str:
    """A record column's JSON (reasons, constraints): compact, keys sorted, by orjson (json only
    for what orjson refuses: a lone surrogate, an integer beyond 64 bits). The hash covers the
    text as stored, and readers parse it, so its spelling is free; this is on every decision's
    path."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))


def payload(fields: tuple[Any, ...]) -> bytes:
    """What a record's hash covers: its stored values in column order, as a JSON array (without
    `principal`, then `constraints`, when NULL: a record from before those columns, or without a
    principal, hashes as it always did)."""
    if len(fields) == 11 and fields[10] is None:
        fields = fields[:10]
    if len(fields) == 10 and fields[9] is None:
        fields = fields[:9]
    return orjson.dumps(fields)


def record_of(r: tuple[Any, ...] | Any, writer: str = "") -> DecisionRecord:
    """A DecisionRecord from the FIELDS columns of a row (`readable_fields` of an older log)."""
    return DecisionRecord(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        json.loads(r[5]),
        r[6],
        r[7],
        float(r[8]),
        writer,
        None if r[9] is None else json.loads(r[9]),
        r[10],
    )


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
    writer: str = ""  # the PDP process that wrote it (central records); '' in a local log
    constraints: dict[str, Any] | None = None  # None: recorded before constraints were kept
    # Who asked, authenticated by a decision front (admin, tenant:NAME, substrate:NAME, local);
    # None: no front stood before the decision (in-process callers), or recorded before principals.
    principal: str | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        if not self.writer:
            del doc["writer"]
        if self.principal is None:
            del doc["principal"]
        return doc


def readable_fields(columns: set[str], prefix: str = "") -> str:
    """FIELDS as a SELECT list, a late column that a log does not have yet read as NULL: a log is
    given its late columns when a writer opens it, and a reader may come first (read-only)."""
    return ", ".join(
        "NULL" if name in LATE_COLUMNS and name not in columns else f"{prefix}{name}"
        for name in (c.strip() for c in FIELDS.split(","))
    )


class ChainStore(Protocol):
    """One writer's chain in a database: what `DecisionLog` and its checkpointer need."""

    location: str  # for messages: the file, or the database and writer

    def commit(self, rows: list[tuple[Any, ...]], intents: list[IntentRow]) -> tuple[int, str, list[str]]:
        """Chain and insert `rows` after this writer's head, and their kept `intents`, in one
        transaction; (first seq, the hash before it, their hashes)."""

    def prune_intents(self, retention: IntentRetention) -> int:
        """Drop kept intents past the retention limits; how many."""

    def select(
        self, tenant: str | None, since: datetime | None, until: datetime | None, limit: int
    ) -> list[DecisionRecord]:
        """Records oldest first (of every writer, in a shared store)."""

    def hash_at(self, seq: int) -> str | None: ...

    def rows_after(self, seq: int) -> Iterator[Row]: ...

    def was_checkpointed(self) -> bool: ...

    def mark_checkpointed(self, sink: Sink) -> None: ...

    def close(self) -> None: ...


class RecordsStoreError(ValueError):
    """Central records cannot be used as configured: a bad URL or writer name, the database
    unreachable, every name of the writer in use. Says which option."""


def is_url(value: str) -> bool:
    return value.startswith(("postgresql://", "postgresql+psycopg://", "postgres://"))

"""What a decision record is, and what the decision log needs of the database that stores it.

Two stores keep records: a local SQLite file (`pdp/records_sqlite.py`, the embedded default) and
PostgreSQL shared by PDP replicas (`pdp/records_postgres.py`, one chain per writer). Both store the
same columns, hashed the same way (`payload`), so a record verifies wherever it is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from pdp.integrity.chain import Row
from pdp.integrity.sinks import Sink

# The stored columns a record's hash covers, in this order.
FIELDS = (
    "decision_id, decided_at, tenant, kind, outcome, reasons, bundle_revision, input_digest, evaluation_ms"
)


def timestamp(moment: datetime) -> str:
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
    writer: str = ""  # the PDP process that wrote it (central records); '' in a local log

    def to_dict(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        if not self.writer:
            del doc["writer"]
        return doc


class ChainStore(Protocol):
    """One writer's chain in a database: what `DecisionLog` and its checkpointer need."""

    location: str  # for messages: the file, or the database and writer

    def commit(self, rows: list[tuple[Any, ...]]) -> tuple[int, str, list[str]]:
        """Chain and insert `rows` after this writer's head in one transaction; (first seq, the
        hash before it, their hashes)."""

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

"""Recorded decisions with their kept intents, streamed from the decision log (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from pdp.decision import ENGINE_POLICY
from pdp.records import postgres
from pdp.records.model import FIELDS, DecisionRecord, readable_fields, record_of, timestamp
from pdp.records.sqlite import read_only

# Why a record cannot be replayed (counted, never silently dropped).
TOO_LARGE = "intent_too_large"  # its intent was over --records-intent-max-bytes: digest only
NOT_KEPT = "intent_not_kept"  # recorded before intents were kept, or dropped by retention
# The recorded answer was the engine failing (a timeout under load...), not the policy deciding:
# comparing it with the candidate would report a flip no policy change made.
ENGINE_FAILED = "recorded_engine_failure"


@dataclass(frozen=True)
class Recorded:
    record: DecisionRecord
    intent: dict[str, Any] | None
    skipped: str = ""  # TOO_LARGE or NOT_KEPT when intent is None


@dataclass(frozen=True)
class Selection:
    since: datetime | None = None
    until: datetime | None = None
    tenant: str | None = None
    kind: str | None = None

    def where(self, placeholder: str) -> tuple[str, list[Any]]:
        clauses, args = [], []
        for column, op, value in (
            ("d.tenant", "=", self.tenant),
            ("d.kind", "=", self.kind),
            ("d.decided_at", ">=", timestamp(self.since) if self.since else None),
            ("d.decided_at", "<", timestamp(self.until) if self.until else None),
        ):
            if value is not None:
                clauses.append(f"{column} {op} {placeholder}")
                args.append(value)
        return (f"WHERE {' AND '.join(clauses)}" if clauses else ""), args


_COLUMNS = ", ".join(f"d.{c.strip()}" for c in FIELDS.split(","))


def _recorded(r: tuple[Any, ...], writer: str = "") -> Recorded:
    record = record_of(r, writer)
    size, text = r[11], r[12]
    if any(reason.get("policy") == ENGINE_POLICY for reason in record.reasons):
        return Recorded(record, None, ENGINE_FAILED)
    if text is not None:
        return Recorded(record, orjson.loads(text))
    return Recorded(record, None, TOO_LARGE if size is not None else NOT_KEPT)


def _sqlite(path: Path, selection: Selection) -> Iterator[Recorded]:
    if not path.exists():
        raise FileNotFoundError(f"--records: no decision log at {path}")
    conn = read_only(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}
        if "decisions" not in tables:
            raise ValueError(f"--records: {path} is not a decision log")
        if "decision_intents" not in tables or "constraints" not in columns:
            # A log from before intents were kept: every record is counted as not replayable.
            legacy = readable_fields(columns - {"constraints"}, "d.")
            where, args = selection.where("?")
            for r in conn.execute(
                f"SELECT {legacy}, NULL, NULL FROM decisions d {where} ORDER BY d.seq", args
            ):
                yield _recorded(r)
            return
        where, args = selection.where("?")
        sql = (
            f"SELECT {readable_fields(columns, 'd.')}, i.size, i.intent FROM decisions d "
            f"LEFT JOIN decision_intents i ON i.decision_id = d.decision_id {where} ORDER BY d.seq"
        )
        for r in conn.execute(sql, args):
            yield _recorded(r)
    finally:
        conn.close()


def _postgres(url: str, selection: Selection) -> Iterator[Recorded]:
    conn = postgres.connect(url)
    try:
        where, args = selection.where("%s")
        sql = (
            f"SELECT {_COLUMNS}, i.size, i.intent, d.writer FROM pdp_decision_records d "
            f"LEFT JOIN pdp_decision_intents i ON i.decision_id = d.decision_id {where} "
            "ORDER BY d.decided_at, d.writer, d.seq"
        )
        with conn.cursor() as cur:
            for r in cur.stream(sql, args):
                yield _recorded(r, r[13])
    finally:
        conn.close()


def recorded(source: Path | str, selection: Selection) -> Iterator[Recorded]:
    """The selected records oldest first, with their kept intents, a page at a time."""
    if isinstance(source, str) and postgres.is_url(source):
        return _postgres(source, selection)
    return _sqlite(Path(source), selection)

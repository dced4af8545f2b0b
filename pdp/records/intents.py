"""The intents kept beside decision records, so that `pdp replay` can decide them again.

A record's chained columns hold `input_digest`, the SHA-256 of the intent's canonical JSON; the
intent itself is kept in a side table as exactly those canonical bytes. So the record's hash covers
the intent (through its digest: an edited intent no longer matches, `pdp records verify` names it),
and retention can drop old intents without touching the chain: a record whose intent is gone keeps
its outcome, reasons, revision and digest, and replay counts it as skipped.

An intent larger than `max_bytes` is not kept: its row holds its size and no text (counted in
`gpupaas_pdp_decision_log_intents_omitted_total` and by replay).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pdp.decision import canonical_intent, digest_of
from pdp.integrity.verify import Problem, Report

if TYPE_CHECKING:
    from prometheus_client import Counter

__all__ = ["IntentRetention", "canonical_intent", "digest_of", "intent_row"]


@functools.cache
def _counters() -> dict[str, Counter]:
    # Made when first counted: `pdp decide` keeps a log but is never scraped, and prometheus_client
    # is a fifth of its start-up.
    from prometheus_client import Counter

    from pdp.metrics import PREFIX

    return {
        "omitted": Counter(
            PREFIX + "decision_log_intents_omitted_total",
            "Decision records whose intent was not kept (larger than --records-intent-max-bytes): the "
            "record holds its digest only and cannot be replayed.",
        ),
        "pruned": Counter(
            PREFIX + "decision_log_intents_pruned_total",
            "Kept intents dropped by retention (--records-intent-days, --records-intent-count).",
        ),
    }


def omitted() -> Counter:
    return _counters()["omitted"]


def pruned() -> Counter:
    return _counters()["pruned"]


# What a kept intent looks like in the side table: (decision_id, decided_at, size, text or None).
IntentRow = tuple[str, str, int, str | None]


@dataclass(frozen=True)
class IntentRetention:
    """How much of each decision's intent the log keeps, and for how long."""

    max_bytes: int = 65536  # larger intents keep their digest only (0: keep no intent)
    max_days: float = 30.0  # intents older than this are dropped (0: no age limit)
    max_count: int = 1_000_000  # only the newest this many are kept (0: no count limit)
    prune_seconds: float = 60.0  # how often the writer applies the limits

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_days", "max_count", "prune_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"intent retention {name}: must be >= 0, not {getattr(self, name)}")

    @classmethod
    def from_env(cls) -> IntentRetention:
        """$PDP_RECORDS_INTENT_MAX_BYTES, $PDP_RECORDS_INTENT_DAYS, $PDP_RECORDS_INTENT_COUNT."""
        base = cls()

        def number(name: str, default: float) -> float:
            raw = os.environ.get(name, "")
            if not raw:
                return default
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"${name}: expected a number, not {raw!r}") from None

        return cls(
            max_bytes=int(number("PDP_RECORDS_INTENT_MAX_BYTES", base.max_bytes)),
            max_days=number("PDP_RECORDS_INTENT_DAYS", base.max_days),
            max_count=int(number("PDP_RECORDS_INTENT_COUNT", base.max_count)),
        )


def intent_row(decision_id: str, decided_at: str, text: str, retention: IntentRetention) -> IntentRow:
    size = len(text.encode())
    if size > retention.max_bytes:
        omitted().inc()
        return decision_id, decided_at, size, None
    return decision_id, decided_at, size, text


# SQL shared by both stores (placeholders differ: `?` in SQLite, `%s` in PostgreSQL).
SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS decision_intents (
    decision_id TEXT PRIMARY KEY,
    decided_at  TEXT NOT NULL,
    size        INTEGER NOT NULL,
    intent      TEXT
);
CREATE INDEX IF NOT EXISTS decision_intents_by_time ON decision_intents (decided_at);
"""
SQLITE_INSERT = (
    "INSERT OR IGNORE INTO decision_intents (decision_id, decided_at, size, intent) VALUES (?,?,?,?)"
)
POSTGRES_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS pdp_decision_intents (
        id BIGSERIAL UNIQUE, decision_id TEXT PRIMARY KEY, decided_at TEXT NOT NULL,
        size INTEGER NOT NULL, intent TEXT)""",
    "CREATE INDEX IF NOT EXISTS pdp_decision_intents_by_time ON pdp_decision_intents (decided_at)",
]
POSTGRES_INSERT = (
    "INSERT INTO pdp_decision_intents (decision_id, decided_at, size, intent) VALUES (%s,%s,%s,%s) "
    "ON CONFLICT (decision_id) DO NOTHING"
)


def check_intents(report: Report, kept: Iterable[tuple[int, str, str, str]]) -> None:
    """(seq, decision id, the record's input_digest, the kept intent) of each kept intent: one whose
    digest no longer matches was edited (or swapped for another record's), named on its record."""
    for seq, decision_id, digest, intent in kept:
        if digest_of(intent) != digest:
            message = (
                f"its kept intent (decision {decision_id}) does not match the record's input_digest (edited?)"
            )
            report.problems.append(Problem(seq, message, subject="decision record", whole="decision log"))

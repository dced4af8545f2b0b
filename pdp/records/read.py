"""Reading a decision log without opening it for writing: query its records, and verify its
chain against the checkpoints in the sink (`pdp records query` / `pdp records verify`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pdp.integrity.chain import Row
from pdp.integrity.checkpoints import claimed_log
from pdp.integrity.sinks import Sink
from pdp.integrity.verify import Problem, Report, verify
from pdp.records.intents import check_intents
from pdp.records.log import LOG_NAME
from pdp.records.model import DecisionRecord, is_url
from pdp.records.sqlite import intent_mismatches, read_only, rows, select


def read_records(
    path: Path | str,
    *,
    tenant: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
    writer: str | None = None,
) -> list[DecisionRecord]:
    """Query a decision log without opening it for writing (no key, no checkpoint, no writer):
    a SQLite file, or central records (postgresql://..., across writers unless `writer`)."""
    if isinstance(path, str) and is_url(path):
        from pdp.records import postgres

        conn = postgres.connect(path)
        try:
            return postgres.select(conn, tenant, since, until, limit, writer)
        finally:
            conn.close()
    sqlite = read_only(Path(path))
    try:
        return select(sqlite, tenant, since, until, limit)
    finally:
        sqlite.close()


def _check(
    entries: list[bytes], rows_: Iterable[Row], trusted: Ed25519PublicKey, name: str, torn: bool
) -> Report:
    return verify(
        entries, rows_, trusted, log=name, subject="decision record", whole="decision log", torn=torn
    )


def verify_log(path: Path, sink: Sink, trusted: Ed25519PublicKey) -> Report:
    """The decision log at `path` against its checkpoints in `sink` and the trusted key. A missing
    file is an empty log (a wiped one shows against the checkpoints)."""
    entries = list(sink.entries())  # first: see integrity.verify
    torn = sink.torn()
    if not path.exists():
        report = _check(entries, [], trusted, LOG_NAME, torn)
        report.notes.insert(0, f"there is no decision log at {path}")
        return report
    conn = read_only(path)
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}
        report = _check(entries, rows(conn, 0) if "hash" in columns else iter(()), trusted, LOG_NAME, torn)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "decision_intents" in tables:
            check_intents(report, intent_mismatches(conn))
        if "hash" not in columns:
            report.problems.insert(
                0, Problem(0, f"{path} is not a chained decision log", whole="decision log")
            )
        return report
    finally:
        conn.close()


def verify_central(url: str, sink: Sink, trusted: Ed25519PublicKey) -> dict[str, Report]:
    """Every writer's chain in central records against its checkpoints in `sink`: the writers the
    table holds and those the sink has checkpoints of (a writer whose records were all deleted
    shows by its checkpoints)."""
    entries = list(sink.entries())  # first: see integrity.verify
    torn = sink.torn()
    named = {claimed_log(line) for line in entries}
    from pdp.records import postgres

    prefix = postgres.LOG_PREFIX
    conn = postgres.connect(url)
    try:
        found = set(postgres.writers(conn))
        found |= {n[len(prefix) :] for n in named if n and n.startswith(prefix)}
        reports = {}
        for writer in sorted(found):
            chain = postgres.rows(conn, writer, 0)
            reports[writer] = _check(entries, chain, trusted, postgres.log_name(writer), torn)
            check_intents(reports[writer], postgres.intent_mismatches(conn, writer))
            # The other writers' checkpoints are not foreign logs here: drop that note.
            reports[writer].notes = [n for n in reports[writer].notes if "of other logs" not in n]
        return reports
    finally:
        conn.close()

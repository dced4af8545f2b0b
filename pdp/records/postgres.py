"""Central decision records: PDP replicas (and the lifecycle) appending to one PostgreSQL table.

Every writer (a PDP process) keeps its own chain, keyed (writer, seq), and checkpoints it exactly
as a local log is checkpointed, under the log name `decisions.<writer>`. A writer holds a session
advisory lock on its name while it runs, so no two processes ever extend one chain; a process
claims the first free name of `<name>`, `<name>-2`, `<name>-3`... so the processes of `serve
--workers` get one each, and a process started after one was killed takes the name it left and
continues (and checkpoints) its chain. Triggers refuse UPDATE, DELETE and TRUNCATE; as with the
SQLite log, what makes an edit show is the chain and its checkpoints (docs/records.md).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from pdp.integrity.chain import GENESIS, Row, link
from pdp.integrity.sinks import Sink
from pdp.records.intents import POSTGRES_INSERT, POSTGRES_SCHEMA, IntentRetention, IntentRow
from pdp.records.model import FIELDS, DecisionRecord, payload, record_of, timestamp

# Defined apart from this module so that checking a URL or catching the error needs no psycopg.
from pdp.records.model import RecordsStoreError as RecordsStoreError
from pdp.records.model import is_url as is_url

LOG_PREFIX = "decisions."
_MAX_SLOTS = 256
_WRITER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")
# Serializes the schema's creation between processes starting at once (CREATE ... IF NOT EXISTS
# is not safe against a concurrent create in PostgreSQL).
_SCHEMA_LOCK = 0x70647072  # "pdpr"

_SCHEMA = [
    f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})",
    """CREATE TABLE IF NOT EXISTS pdp_decision_records (
        writer TEXT NOT NULL, seq BIGINT NOT NULL, decision_id TEXT NOT NULL UNIQUE,
        decided_at TEXT NOT NULL, tenant TEXT NOT NULL, kind TEXT NOT NULL, outcome TEXT NOT NULL,
        reasons TEXT NOT NULL, bundle_revision TEXT NOT NULL, input_digest TEXT NOT NULL,
        evaluation_ms DOUBLE PRECISION NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
        PRIMARY KEY (writer, seq))""",
    "CREATE INDEX IF NOT EXISTS pdp_decision_records_by_tenant_time "
    "ON pdp_decision_records (tenant, decided_at)",
    "CREATE INDEX IF NOT EXISTS pdp_decision_records_by_time ON pdp_decision_records (decided_at)",
    # NULL in records written before constraints were kept (hashed without it).
    "ALTER TABLE pdp_decision_records ADD COLUMN IF NOT EXISTS constraints TEXT",
    # NULL in records written before principals were kept, and without a front (hashed without it).
    "ALTER TABLE pdp_decision_records ADD COLUMN IF NOT EXISTS principal TEXT",
    *POSTGRES_SCHEMA,
    """CREATE TABLE IF NOT EXISTS pdp_decision_writers (
        writer TEXT PRIMARY KEY, checkpointed TEXT NOT NULL)""",
    """CREATE OR REPLACE FUNCTION pdp_decision_records_append_only() RETURNS trigger
        LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'decision records are append-only'; END $$""",
    """CREATE OR REPLACE TRIGGER pdp_decision_records_no_change
        BEFORE UPDATE OR DELETE ON pdp_decision_records
        FOR EACH ROW EXECUTE FUNCTION pdp_decision_records_append_only()""",
    """CREATE OR REPLACE TRIGGER pdp_decision_records_no_truncate
        BEFORE TRUNCATE ON pdp_decision_records
        FOR EACH STATEMENT EXECUTE FUNCTION pdp_decision_records_append_only()""",
]
_INSERT = (
    f"INSERT INTO pdp_decision_records (writer, seq, {FIELDS}, prev_hash, hash) "
    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
)
_ROWS = (
    f"SELECT seq, {FIELDS}, prev_hash, hash FROM pdp_decision_records "
    "WHERE writer = %s AND seq > %s ORDER BY seq"
)


def dsn(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (postgresql+psycopg://)."""
    return re.sub(r"^postgresql\+psycopg://", "postgresql://", url)


def default_writer() -> str:
    """The host name (a pod's name), made a valid writer name."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-.") or "pdp"
    return name[:64]


def check_writer(name: str) -> str:
    if not _WRITER.fullmatch(name):
        raise RecordsStoreError(
            f"--records-writer {name!r}: expected letters, digits, '.', '_' or '-' (at most 101, "
            "starting with a letter or digit)"
        )
    return name


def log_name(writer: str) -> str:
    return LOG_PREFIX + writer


def connect(url: str) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn(url), autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        # The URL holds the password: name the host, not the URL.
        raise RecordsStoreError(f"--records-url: cannot connect to PostgreSQL: {exc}") from exc


# The schema as the last statements of _SCHEMA leave it. Checked first: the DDL takes table locks
# (ALTER TABLE an exclusive one, even when the column is there) that deadlock with other processes'
# appends when a replica starts while others write (seen with `serve --workers 2` on a new database).
_SCHEMA_COMPLETE = """SELECT
    EXISTS (SELECT 1 FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = 'pdp_decision_records'
              AND column_name = 'constraints')
    AND EXISTS (SELECT 1 FROM information_schema.columns
            WHERE table_schema = current_schema() AND table_name = 'pdp_decision_records'
              AND column_name = 'principal')
    AND to_regclass('pdp_decision_intents_by_time') IS NOT NULL
    AND to_regclass('pdp_decision_writers') IS NOT NULL
    AND EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'pdp_decision_records_no_truncate')"""


def create_schema(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute(_SCHEMA[0])  # the advisory lock: one process creates or upgrades at a time
        complete = conn.execute(_SCHEMA_COMPLETE).fetchone()
        if complete and complete[0]:
            return
        for statement in _SCHEMA[1:]:
            conn.execute(statement)


def _claim(conn: psycopg.Connection[Any], writer: str) -> bool:
    found = conn.execute(
        "SELECT pg_try_advisory_lock(hashtextextended('pdp-records:' || %s, 0))", (writer,)
    ).fetchone()
    return bool(found and found[0])


def select(
    conn: psycopg.Connection[Any],
    tenant: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    writer: str | None = None,
) -> list[DecisionRecord]:
    clauses, args = [], []
    for column, op, value in (
        ("tenant", "=", tenant),
        ("writer", "=", writer),
        ("decided_at", ">=", timestamp(since) if since else None),
        ("decided_at", "<", timestamp(until) if until else None),
    ):
        if value is not None:
            clauses.append(f"{column} {op} %s")
            args.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = (
        f"SELECT {FIELDS}, writer FROM pdp_decision_records {where} ORDER BY decided_at, writer, seq LIMIT %s"
    )
    found = conn.execute(sql, [*args, limit]).fetchall()
    return [record_of(r, r[11]) for r in found]


def rows(conn: psycopg.Connection[Any], writer: str, after: int) -> Iterator[Row]:
    with conn.cursor() as cur:
        for r in cur.stream(_ROWS, (writer, after)):  # row by row: a long chain is not held in memory
            fields = (*r[1:9], float(r[9]), r[10], r[11])
            yield int(r[0]), payload(fields), str(r[12]), str(r[13])


def intent_mismatches(conn: psycopg.Connection[Any], writer: str) -> Iterator[tuple[int, str, str, str]]:
    """(seq, decision_id, record's digest, kept intent) of a writer's kept intents."""
    with conn.cursor() as cur:
        yield from cur.stream(
            "SELECT d.seq, d.decision_id, d.input_digest, i.intent FROM pdp_decision_intents i "
            "JOIN pdp_decision_records d ON d.decision_id = i.decision_id "
            "WHERE d.writer = %s AND i.intent IS NOT NULL ORDER BY d.seq",
            (writer,),
        )


# DISTINCT by walking the primary key's index from writer to writer (not a scan of every record).
_WRITERS = """
WITH RECURSIVE w(writer) AS (
    (SELECT writer FROM pdp_decision_records ORDER BY writer LIMIT 1)
    UNION ALL
    SELECT (SELECT r.writer FROM pdp_decision_records r WHERE r.writer > w.writer ORDER BY r.writer LIMIT 1)
    FROM w WHERE w.writer IS NOT NULL
)
SELECT writer FROM w WHERE writer IS NOT NULL"""


def writers(conn: psycopg.Connection[Any]) -> list[str]:
    return [str(r[0]) for r in conn.execute(_WRITERS).fetchall()]


class Chain:
    """One writer's chain as its checkpointer reads it (ChainSource)."""

    def __init__(self, conn: psycopg.Connection[Any], writer: str) -> None:
        self.conn, self.writer = conn, writer

    def hash_at(self, seq: int) -> str | None:
        if seq == 0:
            return GENESIS
        found = self.conn.execute(
            "SELECT hash FROM pdp_decision_records WHERE writer = %s AND seq = %s", (self.writer, seq)
        ).fetchone()
        return None if found is None else str(found[0])

    def rows_after(self, seq: int) -> Iterator[Row]:
        return iter(list(rows(self.conn, self.writer, seq)))

    def was_checkpointed(self) -> bool:
        found = self.conn.execute(
            "SELECT 1 FROM pdp_decision_writers WHERE writer = %s", (self.writer,)
        ).fetchone()
        return found is not None

    def mark_checkpointed(self, sink: Sink) -> None:
        if self.hash_at(1) is None:
            # Nothing checkpointed yet: a writer killed before its first checkpoint must not look
            # like a chain whose sink lost its checkpoints to the process that takes its name.
            return
        at = datetime.now(UTC).isoformat()
        self.conn.execute(
            "INSERT INTO pdp_decision_writers (writer, checkpointed) VALUES (%s, %s) "
            "ON CONFLICT (writer) DO NOTHING",
            (self.writer, json.dumps({"since": at, "sink": sink.location})),
        )


class PostgresStore:
    """One writer's chain in the shared table (ChainStore)."""

    def __init__(self, url: str, name: str = "") -> None:
        self.url = url
        base = check_writer(name or default_writer())
        self.conn = connect(url)
        create_schema(self.conn)
        for slot in range(1, _MAX_SLOTS + 1):
            candidate = base if slot == 1 else f"{base}-{slot}"
            if _claim(self.conn, candidate):
                self.writer = candidate
                break
        else:
            self.conn.close()
            raise RecordsStoreError(f"--records-writer {base}: all {_MAX_SLOTS} names of it are in use")
        self._uncertain = False  # the last commit failed: it may or may not have happened
        host = self.conn.info.host or "localhost"
        self.location = f"postgresql://{host}/{self.conn.info.dbname} writer {self.writer}"

    def _reconnect(self) -> None:
        """After a lost connection (a database restart): the writer's name again, or an error if
        another process took it meanwhile (it then owns the chain)."""
        if not self.conn.closed and not self.conn.broken:
            return
        self.conn = connect(self.url)
        if not _claim(self.conn, self.writer):
            raise RuntimeError(f"decision records writer {self.writer}: taken by another process")

    def commit(self, batch: list[tuple[Any, ...]], intents: list[IntentRow]) -> tuple[int, str, list[str]]:
        """After a failed commit the batch comes again, but that commit may have happened (the
        connection broke before its answer): the records already stored are left out (their
        intents are inserted at most once, by decision id)."""
        self._reconnect()
        if self._uncertain:
            ids = [row[0] for row in batch]
            stored = self.conn.execute(
                "SELECT decision_id FROM pdp_decision_records WHERE writer = %s AND decision_id = ANY(%s)",
                (self.writer, ids),
            ).fetchall()
            batch = [row for row in batch if row[0] not in {r[0] for r in stored}]
        try:
            committed = self._commit(batch, intents)
        except BaseException:
            self._uncertain = True
            raise
        self._uncertain = False
        return committed

    def _commit(self, batch: list[tuple[Any, ...]], intents: list[IntentRow]) -> tuple[int, str, list[str]]:
        with self.conn.transaction():
            head = self.conn.execute(
                "SELECT seq, hash FROM pdp_decision_records WHERE writer = %s ORDER BY seq DESC LIMIT 1",
                (self.writer,),
            ).fetchone()
            seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
            first, before = seq + 1, prev
            chained, hashes = [], []
            for row in batch:
                seq += 1
                digest = link(seq, prev, payload(row))
                chained.append((self.writer, seq, *row, prev, digest))
                hashes.append(digest)
                prev = digest
            with self.conn.cursor() as cur:
                cur.executemany(_INSERT, chained)
                if intents:
                    cur.executemany(POSTGRES_INSERT, intents)
        return first, before, hashes

    def prune_intents(self, retention: IntentRetention) -> int:
        """Drop the kept intents past the age and count limits, of every writer (the records stay)."""
        self._reconnect()
        pruned = 0
        if retention.max_days:
            cutoff = timestamp(datetime.now(UTC) - timedelta(days=retention.max_days))
            pruned += self.conn.execute(
                "DELETE FROM pdp_decision_intents WHERE decided_at < %s", (cutoff,)
            ).rowcount
        if retention.max_count:
            pruned += self.conn.execute(
                "DELETE FROM pdp_decision_intents WHERE id <= (SELECT id FROM pdp_decision_intents "
                "ORDER BY id DESC OFFSET %s LIMIT 1)",
                (retention.max_count,),
            ).rowcount
        return pruned

    def select(
        self, tenant: str | None, since: datetime | None, until: datetime | None, limit: int
    ) -> list[DecisionRecord]:
        self._reconnect()
        return select(self.conn, tenant, since, until, limit)

    def hash_at(self, seq: int) -> str | None:
        return Chain(self.conn, self.writer).hash_at(seq)

    def rows_after(self, seq: int) -> Iterator[Row]:
        return Chain(self.conn, self.writer).rows_after(seq)

    def was_checkpointed(self) -> bool:
        return Chain(self.conn, self.writer).was_checkpointed()

    def mark_checkpointed(self, sink: Sink) -> None:
        Chain(self.conn, self.writer).mark_checkpointed(sink)

    def orphans(self) -> Iterator[Chain]:
        """The chains of writers no process holds (one killed, or a replica gone for good), each
        held while the caller checkpoints what its writer committed after its last checkpoint."""
        for writer in writers(self.conn):
            if writer == self.writer or not _claim(self.conn, writer):
                continue
            try:
                yield Chain(self.conn, writer)
            finally:
                self.conn.execute(
                    "SELECT pg_advisory_unlock(hashtextextended('pdp-records:' || %s, 0))", (writer,)
                )

    def close(self) -> None:
        self.conn.close()  # ends the session: its writer name is free again

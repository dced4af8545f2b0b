"""The decision log: every decision appended to a durable store, hash-chained, with signed
checkpoints in a sink outside the state folder.

OPA's own decision logs are lost if it crashes before shipping them, so the PDP keeps its own
record, queryable by tenant and time: a local SQLite file by default (`pdp/records/sqlite.py`, one
chain), or PostgreSQL shared by PDP replicas (`pdp/records/postgres.py`, one chain per writer
process). What makes an edit, a deletion or a wipe show is the chain and its checkpoints
(`pdp/integrity/`, `pdp records verify`, docs/records.md).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pdp.decision import Decision
from pdp.integrity import signing
from pdp.integrity.checkpoints import Checkpointer, require_trusted
from pdp.integrity.files import inside
from pdp.integrity.sinks import Sink, SinkError, default_sink, open_sink, sink_path
from pdp.records.intents import IntentRetention, IntentRow, intent_row
from pdp.records.intents import pruned as intents_pruned
from pdp.records.model import (
    ChainStore,
    DecisionRecord,
    RecordsStoreError,
    is_url,
    json_text,
    payload,
    timestamp,
)
from pdp.records.sqlite import SqliteStore

if TYPE_CHECKING:
    # Imported where a postgresql:// URL is given: the SQLite default loads no PostgreSQL driver.
    from pdp.records.postgres import PostgresStore

__all__ = [
    "SIGNING_KEY",
    "DecisionLog",
    "DecisionRecord",
    "Integrity",
    "payload",
]

LOG_NAME = "decisions"
SIGNING_KEY = "records-signing-key.pem"

log = logging.getLogger(__name__)

# A committed write per decision was a sixth of a decision's cost under load (profile in
# docs/performance.md); rows are written by one thread in batches instead, at most this long after
# their decision. query() and close() drain what is pending first.
_FLUSH_SECONDS = 0.02


class RecordNotDurable(Exception):
    """Durable mode: the record of a decision was not committed in time; the decision is not
    answered (an error, never an allow)."""


RECORDS_OPTION = "--records-checkpoints (or $PDP_RECORDS_CHECKPOINTS)"


def default_checkpoints(log_path: Path) -> str:
    """The name of the log's checkpoint file in its default sink (where versions before the
    checkpoint home kept it, beside the log)."""
    return f"{log_path.stem}.checkpoints.jsonl"


@dataclass(frozen=True)
class Integrity:
    """Where the log's records and checkpoints go and which key signs them."""

    # A sink outside the state folder (file:PATH, dir:PATH); empty: a file kept for the log's
    # folder under the checkpoint home, outside it (pdp/integrity/sinks.py, default_sink).
    checkpoints: str = ""
    signing_key: Path | None = None  # default: next to the log (records-signing-key.pem)
    # When given, the signing key must be its private half (else its checkpoints would not verify).
    trusted_key: Path | None = None
    # Checkpoint a log that has been checkpointed before although the sink holds none of it.
    adopt: bool = False
    # Committed records are checkpointed at least this often (and when the log closes).
    checkpoint_seconds: float = 1.0
    # postgresql://...: central records shared by replicas, this process one writer of them;
    # empty: the local SQLite file.
    url: str = ""
    writer: str = ""  # the writer's name in central records (default: the host name)
    # append() returns only once the record is committed (a decision is answered only when its
    # record is durable); else it returns at once and the record is committed within ~20 ms.
    durable: bool = False
    durable_timeout: float = 10.0
    # How much of each intent is kept for `pdp replay`, and for how long (pdp/records/intents.py).
    intents: IntentRetention = field(default_factory=IntentRetention)
    # The local log's commits made by a child process (pdp/records/committer.py): a server's
    # decisions then never wait for the log's work on the interpreter lock. Not for a process
    # that decides once (starting the child costs more than it saves) nor central records.
    commit_process: bool = False

    def sink(self, log_path: Path) -> Sink:
        if self.checkpoints:
            return open_sink(self.checkpoints)
        name = default_checkpoints(log_path)
        return open_sink(default_sink(log_path.parent, name, RECORDS_OPTION, legacy=log_path.with_name(name)))

    def key_path(self, log_path: Path) -> Path:
        return self.signing_key or log_path.parent / SIGNING_KEY


def _open_store(path: Path, integrity: Integrity) -> tuple[ChainStore, str]:
    """The store and the checkpointed log's name."""
    if not integrity.url:
        if integrity.commit_process:
            from pdp.records.committer import ProcessCommittedStore

            return ProcessCommittedStore(path), LOG_NAME
        return SqliteStore(path), LOG_NAME
    if not is_url(integrity.url):
        raise RecordsStoreError(
            f"--records-url {integrity.url.split('@')[-1]!r}: expected postgresql://user@host/db "
            "(or nothing: the SQLite file in --state)"
        )
    from pdp.records import postgres

    store = postgres.PostgresStore(integrity.url, integrity.writer)
    return store, postgres.log_name(store.writer)


class DecisionLog:
    def __init__(self, path: Path | str, integrity: Integrity | None = None) -> None:
        """`path`: the local log (and, with central records, where the key and the default
        checkpoints live)."""
        path = Path(path)
        integrity = integrity or Integrity()
        self.path = path
        self.integrity = integrity
        self._lock = threading.Lock()
        key = signing.load_or_create_key(integrity.key_path(path))
        trusted = signing.load_public_key(integrity.trusted_key) if integrity.trusted_key else None
        self._store, name = _open_store(path, integrity)
        self.location = self._store.location
        try:
            require_trusted(key, trusted, f"decision log {self.location}")
            sink = integrity.sink(path)
        except BaseException:
            self._store.close()
            raise
        local = sink_path(sink)
        if local is not None and inside(local, path.parent):
            log.warning(
                "decision log %s: checkpoints in %s, inside its own folder: they catch accidents, not "
                "someone who can rewrite that folder; give a sink outside it (--records-checkpoints)",
                self.location,
                sink.location,
            )
        self.checkpoints = Checkpointer(name, sink, key, interval=integrity.checkpoint_seconds)
        with self._lock:
            self.checkpoints.start(self._store, adopt=integrity.adopt)
            if integrity.url:
                from pdp.records import postgres

                if isinstance(self._store, postgres.PostgresStore):
                    self._checkpoint_orphans(self._store, sink, key)
        self._sink_error = ""
        self._write_error = ""
        self._pending: list[tuple[Any, ...]] = []
        self._pending_intents: list[IntentRow] = []
        self._pruned_at = 0.0  # monotonic time of the last retention pass (0: at the first write)
        self._pending_lock = threading.Lock()
        self._appended = 0  # rows appended so far (durable mode waits for its own to commit)
        self._committed = 0
        self._commits = threading.Condition()
        self._wake = threading.Event()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="decision-log", daemon=True)
        self._writer.start()

    @staticmethod
    def _checkpoint_orphans(store: PostgresStore, sink: Sink, key: Any) -> None:
        """Checkpoint what writers no process holds committed after their last checkpoint (a PDP
        killed before it checkpointed, whose name no process took again): else those records
        would stay checked by their chain alone. Signed with this writer's key (replicas share it)."""
        from pdp.records.postgres import log_name

        for chain in store.orphans():
            orphan = Checkpointer(log_name(chain.writer), sink, key)
            try:
                orphan.start(chain)
                if orphan.checkpointed:
                    log.info(
                        "decision records of writer %s: checkpointed to record %d",
                        chain.writer,
                        orphan.checkpointed,
                    )
            except (OSError, SinkError) as exc:
                log.error("decision records of writer %s: not checkpointed: %s", chain.writer, exc)

    @property
    def writer(self) -> str:
        """This process's writer name in central records ('' for a local log)."""
        return str(getattr(self._store, "writer", ""))

    @property
    def frozen(self) -> str:
        """Why checkpoints stopped (the log does not continue its checkpointed chain), or ''."""
        return self.checkpoints.frozen

    def _write_loop(self) -> None:
        while not self._closed:
            self._wake.wait(_FLUSH_SECONDS)
            self._wake.clear()
            try:
                self.flush()
                with self._lock:
                    self._checkpoint(self.checkpoints.due)
                self._prune_intents()
            except Exception as exc:  # never let the writer die: the next round tries again
                if str(exc) != self._write_error:  # once per distinct error, not every 20 ms
                    log.exception("decision log %s: write failed; retrying", self.location)
                self._write_error = str(exc)
                self._wake.wait(_FLUSH_SECONDS)
            else:
                self._write_error = ""

    def _prune_intents(self) -> None:
        """Apply the intents' retention limits, at most every `prune_seconds`."""
        retention = self.integrity.intents
        now = time.monotonic()
        if self._pruned_at and now - self._pruned_at < retention.prune_seconds:
            return
        self._pruned_at = now
        with self._lock:
            pruned = self._store.prune_intents(retention)
        if pruned:
            intents_pruned().inc(pruned)
            log.info("decision log %s: %d kept intent(s) dropped by retention", self.location, pruned)

    def _checkpoint(self, step: Any) -> None:
        """Run a checkpointer step; a sink that fails is logged (once per distinct error) and the
        checkpoint is kept for the next write."""
        try:
            step()
            self._sink_error = ""
        except (OSError, SinkError) as exc:
            if str(exc) != self._sink_error:
                log.error(
                    "decision log %s: checkpoint not written (kept for the next): %s", self.location, exc
                )
            self._sink_error = str(exc)

    def flush(self) -> None:
        """Write every pending record now, in one transaction."""
        with self._lock:
            with self._pending_lock:
                batch, self._pending = self._pending, []
                intents, self._pending_intents = self._pending_intents, []
                upto = self._appended  # the pending rows are always the newest appended
            if not batch:
                return
            try:
                first, before, hashes = self._store.commit(batch, intents)
            except BaseException:
                with self._pending_lock:
                    self._pending[:0] = batch  # kept, in order, for the next round
                    self._pending_intents[:0] = intents
                raise
            with self._commits:
                self._committed = max(self._committed, upto)
                self._commits.notify_all()
            self._checkpoint(lambda: self.checkpoints.add(first, before, hashes))

    def append(
        self, decision: Decision, input_digest: str, intent: str | None = None, principal: str | None = None
    ) -> None:
        """Record `decision`; `intent`: the intent's canonical JSON (decision.canonical_intent),
        whose digest is `input_digest`, kept for replay within the retention limits; `principal`:
        who asked, as a decision front authenticated them (None without a front)."""
        decided_at = timestamp(decision.decided_at)
        row = (
            decision.decision_id,
            decided_at,
            decision.tenant,
            decision.kind,
            decision.outcome.value,
            json_text([r.__dict__ for r in decision.reasons]),
            decision.bundle_revision,
            input_digest,
            float(decision.evaluation_ms),  # a REAL column gives back a float: hashed as one
            json_text(dict(decision.constraints)),
            principal,
        )
        kept = (
            intent_row(decision.decision_id, decided_at, intent, self.integrity.intents)
            if intent is not None
            else None
        )
        with self._pending_lock:
            self._pending.append(row)
            if kept is not None:
                self._pending_intents.append(kept)
            self._appended += 1
            ticket = self._appended
        if not self.integrity.durable:
            return
        self._wake.set()  # group commit: whatever is pending when the writer wakes goes in one
        with self._commits:
            if not self._commits.wait_for(
                lambda: self._committed >= ticket, timeout=self.integrity.durable_timeout
            ):
                raise RecordNotDurable(
                    f"decision {decision.decision_id}: its record was not committed to "
                    f"{self.location} within {self.integrity.durable_timeout:g} s (kept pending)"
                )

    def query(
        self,
        *,
        tenant: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[DecisionRecord]:
        """Decisions oldest first (of every writer, in central records), optionally of one tenant
        and within [since, until)."""
        self.flush()
        with self._lock:
            return self._store.select(tenant, since, until, limit)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._writer.join(timeout=5)
        self.flush()
        with self._lock:
            self._checkpoint(self.checkpoints.flush)
            self._store.close()

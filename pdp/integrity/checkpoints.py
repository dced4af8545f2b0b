"""Signed checkpoints: what a writer committed, with every record's chain hash, in an outside sink.

A checkpoint covers records first..last of one log: the chain hash before them (`prev`), each of
theirs, the time, and an Ed25519 signature by the writer's key. Because it holds every record's
hash (32 bytes each), a verifier names the first record whose hash differs, not only a range
between two checkpoints. Each writer checkpoints what it committed, after the commit (never
before: a checkpoint must not name records a rollback took back), so a crash between commit and
checkpoint leaves records checked by the chain alone until the next start checkpoints them.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pdp.integrity import signing
from pdp.integrity.chain import GENESIS, Row, canonical, link
from pdp.integrity.sinks import CheckpointExists, Sink

TYPE = "gpupaas.io/records-checkpoint"
DIGEST = 32
# How many of its own checkpoints a writer reads back at start, newest first.
_LOOK_BACK = 64

log = logging.getLogger(__name__)


class CheckpointError(Exception):
    pass


@dataclass(frozen=True)
class Checkpoint:
    log: str
    first: int
    last: int
    prev: str  # the chain hash of record first-1 (GENESIS when first is 1)
    hashes: bytes  # the chain hash of each record first..last, DIGEST bytes each
    at: str

    def hash_at(self, seq: int) -> str:
        if seq == self.first - 1:
            return self.prev
        i = (seq - self.first) * DIGEST
        return self.hashes[i : i + DIGEST].hex()

    @property
    def head(self) -> str:
        return self.hash_at(self.last)

    @property
    def span(self) -> str:
        return f"record {self.first}" if self.first == self.last else f"records {self.first}-{self.last}"


def name(log_name: str, first: int, last: int) -> str:
    """Unique per checkpoint, and in sequence order when sorted (a write-once folder's file name)."""
    return f"{log_name}-{last:012d}-{first:012d}"


def encode(log_name: str, first: int, prev: str, hashes: Sequence[str], key: Ed25519PrivateKey) -> bytes:
    doc = {
        "type": TYPE,
        "log": log_name,
        "first": first,
        "last": first + len(hashes) - 1,
        "prev": prev,
        "hashes": base64.b64encode(b"".join(bytes.fromhex(h) for h in hashes)).decode(),
        "at": datetime.now(UTC).isoformat(),
        "signed_with": {"algorithm": signing.ALGORITHM, "key_id": signing.key_id(key.public_key())},
    }
    text = canonical(doc)
    return canonical({"document": text, "signature": signing.sign(text, key)}).encode()


def claimed_log(line: bytes) -> str | None:
    """The log an unverified checkpoint names; None when the line is not a checkpoint at all."""
    try:
        log_name = json.loads(json.loads(line)["document"])["log"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(log_name)


def claimed(line: bytes) -> str:
    """What an unverified checkpoint says it covers, for naming one that fails."""
    try:
        doc = json.loads(json.loads(line)["document"])
        return f"{doc['log']!r} records {int(doc['first'])}-{int(doc['last'])} as it claims"
    except (ValueError, KeyError, TypeError):
        return "unreadable"


def decode(line: bytes, trusted: Ed25519PublicKey) -> Checkpoint:
    """The checkpoint in `line`, verified against the trusted key; CheckpointError says why not."""
    try:
        outer = json.loads(line)
        text, sig = outer["document"], outer["signature"]
        if not isinstance(text, str) or not isinstance(sig, dict):
            raise TypeError("'document' is not text or 'signature' is not an object")
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"not a signed checkpoint: {exc}") from exc
    problems = signing.signature_problems(text, sig, trusted)
    if problems:
        raise CheckpointError("; ".join(problems))
    try:
        doc = json.loads(text)
        if doc.get("type") != TYPE:
            raise ValueError(f"of type {doc.get('type')!r}, not {TYPE}")
        cp = Checkpoint(
            str(doc["log"]),
            int(doc["first"]),
            int(doc["last"]),
            str(doc["prev"]),
            base64.b64decode(doc["hashes"], validate=True),
            str(doc["at"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise CheckpointError(f"signed, but not a well-formed checkpoint: {exc}") from exc
    if cp.first < 1 or cp.last < cp.first or len(cp.hashes) != (cp.last - cp.first + 1) * DIGEST:
        raise CheckpointError(f"signed, but its range {cp.first}-{cp.last} does not match its hashes")
    if cp.first == 1 and cp.prev != GENESIS:
        raise CheckpointError("signed, but its first record does not link to the genesis hash")
    return cp


class ChainSource(Protocol):
    """What a checkpointer needs of the log it checkpoints."""

    def hash_at(self, seq: int) -> str | None:
        """The stored hash of record `seq` (GENESIS for 0); None when there is no such record."""

    def rows_after(self, seq: int) -> Iterable[Row]:
        """The records after `seq`, in order."""

    def was_checkpointed(self) -> bool:
        """Whether this log has been checkpointed before (it says so in itself)."""

    def mark_checkpointed(self, sink: Sink) -> None:
        """Say so, once the sink holds the log's first checkpoint."""


class Checkpointer:
    """Writes one log's checkpoints to its sink, for one writer process.

    `add` takes each committed batch; with `interval` 0 every batch is checkpointed at once, else
    consecutive batches are gathered and written when `interval` seconds passed (`due`) or on
    `flush`. A failed write keeps the batch and raises: the next write carries it.
    """

    def __init__(
        self,
        log_name: str,
        sink: Sink,
        key: Ed25519PrivateKey,
        *,
        interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log_name = log_name
        self.sink = sink
        self.key = key
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: list[tuple[int, str, list[str]]] = []
        self._written_at = clock()
        self.checkpointed = 0  # the last record this process saw checkpointed
        # Why no checkpoint is written any more (the log does not continue the checkpointed
        # chain); kept until an operator acts, so no later checkpoint blesses a rewritten log.
        self.frozen = ""

    def latest(self) -> Checkpoint | None:
        """The sink's checkpoint of this log that reaches furthest (looking back a little past the
        newest: writer processes may finish theirs out of order); CheckpointError when one of them
        is not this key's (a replaced key, or someone else writing)."""
        found: Checkpoint | None = None
        seen = 0
        for line in self.sink.backwards(f"{self.log_name}-"):
            if claimed_log(line) != self.log_name:
                continue  # another log's, or not a checkpoint (a write a crash cut short)
            try:
                cp = decode(line, self.key.public_key())
            except CheckpointError as exc:
                raise CheckpointError(
                    f"a checkpoint in {self.sink.location} ({claimed(line)}): {exc}"
                ) from exc
            if found is None or cp.last > found.last:
                found = cp
            seen += 1
            if seen >= _LOOK_BACK:
                break
        return found

    def start(self, source: ChainSource, *, adopt: bool = False) -> None:
        """Check that the log continues the sink's latest checkpoint, then checkpoint what was
        committed after it (a crash's window). A log that does not continue it, or a sink that
        lost the log's checkpoints, freezes the checkpointer: its evidence is left as it is."""
        try:
            latest = self.latest()
        except CheckpointError as exc:
            self._freeze(str(exc))
            return
        if latest is None:
            if source.hash_at(1) is not None and source.was_checkpointed() and not adopt:
                self._freeze(
                    f"{self.sink.location} holds no checkpoint of the {self.log_name} log, which has "
                    "been checkpointed before (a replaced or emptied sink?); start with the adopt "
                    "option to checkpoint it anew"
                )
                return
            first, prev = 1, GENESIS
        else:
            if source.hash_at(latest.last) != latest.head:
                self._freeze(
                    f"record {latest.last} (checkpointed in {self.sink.location}) is gone or altered: the "
                    f"{self.log_name} log does not continue its checkpointed chain"
                )
                return
            first, prev = latest.last + 1, latest.head
            self.checkpointed = latest.last
        hashes: list[str] = []
        link_to = prev
        for seq, payload, stored_prev, digest in source.rows_after(first - 1):
            if (
                seq != first + len(hashes)
                or stored_prev != link_to
                or link(seq, stored_prev, payload) != digest
            ):
                self._freeze(
                    f"record {seq} does not continue the chain after record {first + len(hashes) - 1}: "
                    "not checkpointed (verify the log)"
                )
                return
            hashes.append(digest)
            link_to = digest
        if hashes:
            self._write(first, prev, hashes)
        if latest is None:
            source.mark_checkpointed(self.sink)

    def _freeze(self, why: str) -> None:
        self.frozen = why
        log.error("%s log: checkpoints stopped: %s", self.log_name, why)

    def add(self, first: int, prev: str, hashes: list[str]) -> None:
        """Records first.. (their chain hashes), just committed after the record whose hash is prev."""
        if not hashes:
            return
        with self._lock:
            if self.frozen:
                return
            last = self._pending[-1] if self._pending else None
            if last is not None and last[0] + len(last[2]) == first:
                last[2].extend(hashes)
            else:  # the first, or not contiguous (another process committed in between)
                self._pending.append((first, prev, list(hashes)))
            if self.interval <= 0 or self._clock() - self._written_at >= self.interval:
                self._write_pending()

    def due(self) -> None:
        """Write what is gathered if `interval` has passed since the last write."""
        with self._lock:
            if self._pending and self._clock() - self._written_at >= self.interval:
                self._write_pending()

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._write_pending()

    def _write_pending(self) -> None:
        while self._pending:
            self._write(*self._pending[0])
            self._pending.pop(0)

    def _write(self, first: int, prev: str, hashes: list[str]) -> None:
        last = first + len(hashes) - 1
        try:
            self.sink.put(
                name(self.log_name, first, last), encode(self.log_name, first, prev, hashes, self.key)
            )
        except CheckpointExists:
            # The same range, checkpointed by another process of this log as it started: names
            # are per range, and a verifier compares both should they differ.
            log.info("%s log: %s checkpointed already", self.log_name, _span(first, last))
        self._written_at = self._clock()
        self.checkpointed = max(self.checkpointed, last)


def _span(first: int, last: int) -> str:
    return f"record {first}" if first == last else f"records {first}-{last}"


def require_trusted(key: Ed25519PrivateKey, trusted: Ed25519PublicKey | None, what: str) -> None:
    """Refuse a signing key whose checkpoints the configured trusted key would not accept."""
    if trusted is not None and signing.key_id(key.public_key()) != signing.key_id(trusted):
        raise signing.KeyFileError(
            f"{what}: the signing key ({signing.key_id(key.public_key())}) is not the trusted key's "
            f"({signing.key_id(trusted)}): replaced? its checkpoints would not verify"
        )

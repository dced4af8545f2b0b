"""The audit trail's outside anchor: signed checkpoints of its records, in a sink outside the
state folder (`pdp/integrity/`, shared with the decision log).

The hash chain alone cannot show records deleted from its end (the shorter chain still links) nor
a trail rewritten and re-chained. The worker therefore checkpoints the records of every write
transaction that appended some, after its commit (never before: a checkpoint must not name records
a rollback or a crash took back), with each record's hash, signed with its Ed25519 key, into the
sink (`--audit-checkpoints`). After a kill -9 the records of at most one transaction are not
checkpointed; the next start checkpoints them. The checkpoints only move forward along the chain:
when the latest no longer matches the trail (or is not this key's), the worker stops checkpointing
and leaves the evidence as it is, so a restart cannot bless a truncated or rewritten trail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pdp.integrity import signing
from pdp.integrity.chain import GENESIS, Row, canonical
from pdp.integrity.checkpoints import Checkpointer
from pdp.integrity.sinks import Sink
from pdp.integrity.verify import Report, verify_records
from pdp.integrity.verify import verify as verify_chain
from pdp.lifecycle.storage import audit
from pdp.lifecycle.storage.db import Appended, Database

LOG_NAME = "audit"
EXPORT_TYPE = "gpupaas.io/audit-export"
# Event key prefix of the record that says the trail is checkpointed (from a first start, or anew).
ANCHORED_KEY = "audit:anchored"
# The key of the export's last line, which carries its seal.
EXPORT_KEY = "export"
# The trail's checkpoint file in its default sink (pdp/integrity/sinks.py, default_sink), and where
# versions before the checkpoint home kept it, in <state>/lifecycle.
AUDIT_CHECKPOINTS = "audit-checkpoints.jsonl"
AUDIT_OPTION = "--audit-checkpoints (or $PDP_AUDIT_CHECKPOINTS)"
SUBJECT, WHOLE = "audit record", "audit trail"


class _Trail:
    """The trail as its checkpointer reads it (ChainSource)."""

    def __init__(self, db: Database, key: Ed25519PrivateKey) -> None:
        self.db = db
        self.key = key

    def hash_at(self, seq: int) -> str | None:
        if seq == 0:
            return GENESIS
        with self.db.read() as conn:
            found = conn.execute(sa.text("SELECT hash FROM lc_audit WHERE seq = :s"), {"s": seq}).scalar()
        return None if found is None else str(found)

    def rows_after(self, seq: int) -> Iterator[Row]:
        return (row for row in audit.chain_rows(self.db) if row[0] > seq)

    def _anchored_since(self) -> int | None:
        with self.db.read() as conn:
            since = conn.execute(
                sa.text("SELECT MIN(seq) FROM lc_audit WHERE event_key LIKE :k"), {"k": f"{ANCHORED_KEY}:%"}
            ).scalar()
        return None if since is None else int(since)

    def was_checkpointed(self) -> bool:
        return self._anchored_since() is not None

    def mark_checkpointed(self, sink: Sink) -> None:
        """Say in the trail that it is checkpointed from here on, and where."""
        again = self.was_checkpointed()
        at = datetime.now(UTC).isoformat()
        with self.db.write() as conn:
            audit.append(
                conn,
                f"{ANCHORED_KEY}:{at}",
                event="audit.anchored",
                tenant="",
                detail={
                    "sink": sink.location,
                    "key_id": signing.key_id(self.key.public_key()),
                    "why": "re-anchored by an operator" if again else "first anchor",
                },
            )


class Anchor:
    """Checkpoints the trail's records as they commit, for one worker process."""

    def __init__(
        self,
        sink: Sink,
        key: Ed25519PrivateKey,
        db: Database,
        reanchor: bool = False,
        trusted: Ed25519PublicKey | None = None,
    ) -> None:
        self.sink = sink
        self.key = key
        # The configured trusted key (the worker's /v1/audit/verify checks with it when given).
        self.trusted = trusted
        self.db = db
        self.reanchor = reanchor
        self.checkpoints = Checkpointer(LOG_NAME, sink, key)

    @property
    def frozen(self) -> str:
        """Why the trail is no longer checkpointed (it stays as evidence until an operator acts)."""
        return self.checkpoints.frozen

    def start(self) -> None:
        """Check the sink's latest checkpoint against the trail, then checkpoint what was committed
        after it. A sink with no checkpoint of a trail that says it was checkpointed (an
        `audit.anchored` record) is not started anew unless `reanchor` (recorded in the trail).
        From here on every commit that appends is checkpointed (that record's too)."""
        self.db.after_audit_commit = self.after_commit
        self.checkpoints.start(_Trail(self.db, self.key), adopt=self.reanchor)

    def after_commit(self, appended: Appended) -> None:
        """Checkpoint the records a transaction appended (called after its commit). A failed write
        raises into the caller after the commit, so it is seen (a step fails and retries); the
        records stay pending and the next write carries them."""
        run: list[str] = []
        first, prev = 0, GENESIS
        for seq, link_to, digest in sorted(appended):
            if run and seq != first + len(run):
                self.checkpoints.add(first, prev, run)
                run = []
            if not run:
                first, prev = seq, link_to
            run.append(digest)
        self.checkpoints.add(first, prev, run)


def verify(db: Database, sink: Sink, trusted: Ed25519PublicKey) -> Report:
    """The database's trail against the checkpoints in `sink` and the trusted key."""
    entries = list(sink.entries())  # first: see integrity.verify
    return verify_chain(
        entries, audit.chain_rows(db), trusted, log=LOG_NAME, torn=sink.torn(), subject=SUBJECT, whole=WHOLE
    )


def seal(tenant: str | None, rows: list[dict[str, Any]], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The signed seal of an export: whose records (None: everyone's), how many, and the last one,
    so an export cut short or thinned out (a tenant's trail does not link) shows offline too."""
    doc = {
        "type": EXPORT_TYPE,
        "tenant": tenant,
        "records": len(rows),
        "last_seq": rows[-1]["seq"] if rows else 0,
        "last_hash": rows[-1]["hash"] if rows else GENESIS,
        "exported_at": datetime.now(UTC).isoformat(),
        "signed_with": {"algorithm": signing.ALGORITHM, "key_id": signing.key_id(key.public_key())},
    }
    text = canonical(doc)
    return {"document": text, "signature": signing.sign(text, key)}


def export_jsonl(db: Database, tenant: str | None = None, key: Ed25519PrivateKey | None = None) -> str:
    """The records as JSON lines, then one line {"export": <the seal, when a key is given>}, so an
    archived trail can be verified offline (`verify_export`)."""
    rows = list(audit.records(db, tenant))
    last = {EXPORT_KEY: seal(tenant, rows, key) if key is not None else None}
    return "".join(canonical(r) + "\n" for r in [*rows, last])


def _unseal(
    sealed: Any, rows: list[Row], public: Ed25519PublicKey, report: Report
) -> tuple[bool, str | None]:
    """Check the export's seal against the records it holds; (sealed and verified, its tenant)."""
    if not isinstance(sealed, Mapping) or not isinstance(sealed.get("document"), str):
        report.problems.append(
            audit.Problem(0, "the export is not sealed: deletions from it cannot be detected")
        )
        return False, None
    text = str(sealed["document"])
    bad = signing.signature_problems(text, sealed.get("signature") or {}, public)
    report.problems += [audit.Problem(0, f"the export's seal: {p}") for p in bad]
    if bad:
        return False, None
    doc = json.loads(text)  # signed by the worker: well-formed
    if doc.get("type") != EXPORT_TYPE:
        report.problems.append(audit.Problem(0, f"the export's seal is of type {doc.get('type')!r}"))
        return False, None
    n, last_seq = int(doc["records"]), int(doc["last_seq"])
    held, held_last = len(rows), rows[-1][0] if rows else 0
    if (held, held_last) != (n, last_seq) or (rows and rows[-1][3] != doc["last_hash"]):
        report.problems.append(
            audit.Problem(
                last_seq,
                f"missing: the export was sealed with {n} records, the last being record {last_seq}; it "
                f"holds {held}, the last being record {held_last}: {n - held} record(s) deleted from it",
            )
        )
    return True, None if doc.get("tenant") is None else str(doc["tenant"])


def verify_export(text: str, public: Ed25519PublicKey, entries: list[bytes] | None = None) -> Report:
    """Offline: an exported trail and its seal, and the sink's checkpoints when given. A whole trail
    is checked as the database is; a tenant's (filtered) trail record by record (each hash, the
    links between consecutive records, each record's checkpointed hash), since the other tenants'
    records that link it are not in it, and against its seal, which shows records deleted from it."""
    rows: list[Row] = []
    last: dict[str, Any] | None = None
    tenants = set()
    for line in text.splitlines():
        doc = json.loads(line)
        if EXPORT_KEY in doc:
            last = doc
            continue
        seq, prev, digest = int(doc.pop("seq")), str(doc.pop("prev_hash")), str(doc.pop("hash"))
        tenants.add(doc.get("tenant"))
        rows.append((seq, canonical(doc).encode(), prev, digest))
    if last is None:
        return Report(
            problems=[
                audit.Problem(0, "the export has no seal line: not an export of this trail, or cut short")
            ],
            chain_end=rows[-1][0] if rows else 0,
        )
    sealing = Report()
    sealed, tenant = _unseal(last.get(EXPORT_KEY), rows, public, sealing)
    whole = tenant is None and (sealed or [r[0] for r in rows] == list(range(1, len(rows) + 1)))
    if whole and entries is not None:
        report = verify_chain(entries, rows, public, log=LOG_NAME, subject=SUBJECT, whole=WHOLE)
    else:
        report = verify_records(
            entries or [], rows, public, log=LOG_NAME, consecutive=whole, subject=SUBJECT, whole=WHOLE
        )
        if entries is None:
            report.notes.append("checked against its seal only: give the checkpoints to check every record")
    report.problems[:0] = sealing.problems
    if not whole:
        who = "an unsealed trail" if tenant is None else f"the trail of tenant {tenant!r}"
        report.notes.append(f"{who}: links to other tenants' records cannot be checked")
        if tenant is not None and tenants - {tenant}:
            report.problems.append(
                audit.Problem(0, f"records of other tenants in tenant {tenant!r}'s export")
            )
    return report

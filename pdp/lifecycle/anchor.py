"""The audit trail's external anchor: the chain head (seq and hash of the last record) signed with
the worker's Ed25519 key, in a file outside the database.

The hash chain alone cannot show records deleted from its end: the shorter chain still links. The
anchor can. It is rewritten after every write transaction that appended records, after the commit
(never before: an anchor must not name a record a rollback or a crash took back), so after a kill -9
it is at most one transaction behind. `verify` therefore accepts a chain that reaches past the
anchor (reported as a note) provided the anchored record is still there with the anchored hash, and
reports a chain that ends before the anchored seq as records deleted from the end. The anchor only
moves forward along the chain it anchored: when the anchored record is gone or altered (or the file
does not verify), the worker stops advancing it, so a restart cannot bless a truncated trail.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pdp.lifecycle import audit, certificate
from pdp.lifecycle.audit import GENESIS, Problem, canonical
from pdp.lifecycle.db import Database

TYPE = "gpupaas.io/audit-anchor"
EXPORT_TYPE = "gpupaas.io/audit-export"
# Event key prefix of the record each new anchor starts with.
ANCHORED_KEY = "audit:anchored"
# The key of the export's last line, which carries the anchor.
EXPORT_KEY = "audit_anchor"

log = logging.getLogger(__name__)

Row = tuple[int, str, str, str]


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str


class AnchorError(Exception):
    pass


def sign(head: Head, key: Ed25519PrivateKey) -> dict[str, Any]:
    """The anchor of `head`: the canonical document and its signature block."""
    doc = {
        "type": TYPE,
        "seq": head.seq,
        "hash": head.hash,
        "anchored_at": datetime.now(UTC).isoformat(),
        "signed_with": {"algorithm": certificate.ALGORITHM, "key_id": certificate.key_id(key.public_key())},
    }
    text = canonical(doc)
    return {"document": text, "signature": certificate.sign(text, key)}


def check(anchor: Mapping[str, Any], public: Ed25519PublicKey) -> tuple[Head | None, list[str]]:
    """The head an anchor vouches for, or None and what is wrong with it (a forged or edited
    anchor, one signed by another key)."""
    text, sig = anchor.get("document"), anchor.get("signature")
    if not isinstance(text, str) or not isinstance(sig, Mapping):
        return None, ["the audit anchor is not signed: 'document' or 'signature' is missing"]
    problems = [f"the audit anchor: {p}" for p in certificate.signature_problems(text, sig, public)]
    try:
        doc = json.loads(text)
        head = Head(int(doc["seq"]), str(doc["hash"]))
        if doc.get("type") != TYPE:
            problems.append(f"the audit anchor's document is of type {doc.get('type')!r}, not {TYPE}")
    except (ValueError, KeyError, TypeError) as exc:
        return None, [*problems, f"the audit anchor's document is unreadable: {exc}"]
    return (None if problems else head), problems


def read(path: Path) -> dict[str, Any] | None:
    """The anchor file's content; None when there is none. AnchorError when it is not JSON."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        loaded = json.loads(text)
    except ValueError as exc:
        raise AnchorError(f"the audit anchor {path} is not JSON: {exc}") from exc
    if not isinstance(loaded, dict):
        raise AnchorError(f"the audit anchor {path} is not a JSON object")
    return loaded


def write(path: Path, anchor: Mapping[str, Any]) -> None:
    """Replace the anchor file atomically and durably: a reader (or a crash) sees the old anchor
    or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, (canonical(anchor) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


def _head(conn: sa.Connection) -> Head:
    row = conn.execute(sa.text("SELECT seq, hash FROM lc_audit ORDER BY seq DESC LIMIT 1")).first()
    return Head(int(row[0]), str(row[1])) if row else Head(0, GENESIS)


def _hash_at(conn: sa.Connection, seq: int) -> str | None:
    if seq == 0:
        return GENESIS
    found = conn.execute(sa.text("SELECT hash FROM lc_audit WHERE seq = :s"), {"s": seq}).scalar()
    return None if found is None else str(found)


class Anchor:
    """Keeps the anchor file at the head of the chain, for one worker process."""

    def __init__(self, path: Path, key: Ed25519PrivateKey, db: Database, reanchor: bool = False) -> None:
        self.path = path
        self.key = key
        self.db = db
        self.reanchor = reanchor
        self._lock = threading.Lock()
        self._last: Head | None = None
        # Why the anchor is no longer advanced (it stays as evidence until an operator acts).
        self.frozen = ""

    def start(self) -> None:
        """Check the anchor left by the previous run, then advance it to the head (closing the
        window a crash between commit and anchor write left). An anchor that does not verify, or
        whose record is gone or altered, is kept and not advanced."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)  # a write a kill -9 interrupted (never renamed: not the anchor)
        try:
            existing = read(self.path)
        except AnchorError as exc:
            self._freeze(str(exc))
            return
        if existing is None:
            self._begin()
            return
        head, problems = check(existing, self.key.public_key())
        if head is None:
            self._freeze("; ".join(problems))
            return
        self._last = head
        self.advance()

    def _begin(self) -> None:
        """No anchor file: the first start with anchoring trusts the chain as it is, and says so in
        the chain (`audit.anchored`). Once the trail holds that record, a missing file means it was
        removed, and only an operator's --audit-reanchor (recorded too) starts a new anchor."""
        with self.db.read() as conn:
            since = conn.execute(
                sa.text("SELECT MIN(seq) FROM lc_audit WHERE event_key LIKE :k"), {"k": f"{ANCHORED_KEY}:%"}
            ).scalar()
        if since is not None and not self.reanchor:
            self._freeze(
                f"the anchor file is missing, but this trail has been anchored since record {since} "
                "(removed?); start with --audit-reanchor to anchor it anew"
            )
            return
        # The file first: a crash before the record commits must not leave a trail that says it
        # was anchored without an anchor (which would read as a removed anchor).
        with self.db.read() as conn:
            self._last = _head(conn)
        write(self.path, sign(self._last, self.key))
        at = datetime.now(UTC).isoformat()
        with self.db.write() as conn:
            audit.append(
                conn,
                f"{ANCHORED_KEY}:{at}",
                event="audit.anchored",
                tenant="",
                detail={
                    "path": str(self.path),
                    "key_id": certificate.key_id(self.key.public_key()),
                    "why": "re-anchored by an operator" if since is not None else "first anchor",
                },
            )
        self.advance()

    def _freeze(self, why: str) -> None:
        self.frozen = why
        log.error("audit anchor %s not advanced: %s", self.path, why)

    def advance(self) -> None:
        """Anchor the committed head (called after each write transaction that appended). A failed
        write raises into the caller after its commit, so it is seen (a step fails and retries); the
        next append anchors the head, not only its own record, so the anchor catches up."""
        with self._lock:
            if self.frozen:
                return
            with self.db.read() as conn:
                # Read under the lock: successive reads see a head that only grows.
                head = _head(conn)
                last = self._last
                if last is not None and (head.seq < last.seq or _hash_at(conn, last.seq) != last.hash):
                    self._freeze(
                        f"audit record {last.seq} (anchored) is gone or altered; the chain ends at {head.seq}"
                    )
                    return
            if last == head:
                return
            write(self.path, sign(head, self.key))
            self._last = head


@dataclass
class Report:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    anchor: Head | None = None
    chain_end: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": [str(p) for p in self.problems],
            "notes": self.notes,
            "chain_end": self.chain_end,
            "anchor": None if self.anchor is None else {"seq": self.anchor.seq, "hash": self.anchor.hash},
        }


def against(rows: list[Row], anchor: Mapping[str, Any] | None, public: Ed25519PublicKey) -> Report:
    """Check a whole chain (rows in seq order) and its anchor. Pure. The anchor must have been read
    before the rows: the chain only grows, so an anchor read first never names a record the rows
    cannot contain."""
    report = Report(problems=audit.verify_rows(rows), chain_end=rows[-1][0] if rows else 0)
    if anchor is None:
        if rows:
            report.problems.append(
                Problem(0, "no anchor: records deleted from the end of the trail cannot be detected")
            )
        return report
    head, problems = check(anchor, public)
    report.problems += [Problem(0, p) for p in problems]
    if head is None:
        return report
    report.anchor = head
    hashes = {seq: digest for seq, _, _, digest in rows}
    hashes[0] = GENESIS
    end = report.chain_end
    if end < head.seq:
        missing = head.seq - end
        which = f"record {head.seq}" if missing == 1 else f"records {end + 1}-{head.seq}"
        report.problems.append(
            Problem(
                head.seq,
                f"missing: the anchor is at record {head.seq} but the chain ends at record {end}: "
                f"{missing} record{'s' if missing > 1 else ''} deleted from the end after record {end} "
                f"({which})",
            )
        )
    elif hashes.get(head.seq) != head.hash:
        report.problems.append(
            Problem(head.seq, "does not match the anchored hash (the trail was cut back and rewritten?)")
        )
    elif end > head.seq:
        report.notes.append(
            f"{end - head.seq} record(s) after the anchor (record {head.seq}): appended after the anchor "
            "was last written (a crash between commit and anchor, or a read during a write)"
        )
    return report


def _rows(db: Database) -> list[Row]:
    with db.read() as conn:
        rows = conn.execute(sa.text("SELECT seq, record, prev_hash, hash FROM lc_audit ORDER BY seq")).all()
    return [(int(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


def verify(db: Database, path: Path, public: Ed25519PublicKey) -> Report:
    """The database's chain against the anchor file."""
    try:
        anchor = read(path)  # first: see `against`
    except AnchorError as exc:
        return Report(problems=[Problem(0, str(exc))])
    return against(_rows(db), anchor, public)


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
        "signed_with": {"algorithm": certificate.ALGORITHM, "key_id": certificate.key_id(key.public_key())},
    }
    text = canonical(doc)
    return {"document": text, "signature": certificate.sign(text, key)}


def export_jsonl(
    db: Database, path: Path, tenant: str | None = None, key: Ed25519PrivateKey | None = None
) -> str:
    """The records as JSON lines, then one line {"audit_anchor": <the anchor file's content>,
    "export": <the seal, when a key is given>}, so an archived trail can be verified offline
    (`verify_export`)."""
    try:
        anchor = read(path)  # first: see `against`
    except AnchorError:
        anchor = None  # exported as it is not: the verifier reports it missing
    rows = list(audit.records(db, tenant))
    last: dict[str, Any] = {EXPORT_KEY: anchor}
    if key is not None:
        last["export"] = seal(tenant, rows, key)
    return "".join(canonical(r) + "\n" for r in [*rows, last])


def _unseal(
    sealed: Any, rows: list[Row], public: Ed25519PublicKey, report: Report
) -> tuple[bool, str | None]:
    """Check the export's seal against the records it holds; (sealed and verified, its tenant)."""
    if not isinstance(sealed, Mapping) or not isinstance(sealed.get("document"), str):
        report.problems.append(Problem(0, "the export is not sealed: deletions from it cannot be detected"))
        return False, None
    text = str(sealed["document"])
    bad = certificate.signature_problems(text, sealed.get("signature") or {}, public)
    report.problems += [Problem(0, f"the export's seal: {p}") for p in bad]
    if bad:
        return False, None
    doc = json.loads(text)  # signed by the worker: well-formed
    if doc.get("type") != EXPORT_TYPE:
        report.problems.append(Problem(0, f"the export's seal is of type {doc.get('type')!r}"))
        return False, None
    n, last_seq = int(doc["records"]), int(doc["last_seq"])
    held, held_last = len(rows), rows[-1][0] if rows else 0
    if (held, held_last) != (n, last_seq) or (rows and rows[-1][3] != doc["last_hash"]):
        report.problems.append(
            Problem(
                last_seq,
                f"missing: the export was sealed with {n} records, the last being record {last_seq}; it "
                f"holds {held}, the last being record {held_last}: {n - held} record(s) deleted from it",
            )
        )
    return True, None if doc.get("tenant") is None else str(doc["tenant"])


def verify_export(text: str, public: Ed25519PublicKey) -> Report:
    """Offline: an exported trail with its seal and anchor. A whole trail is checked as the
    database is (chain, anchor); a tenant's (filtered) trail record by record (each hash, the links
    between consecutive records), since the other tenants' records that link it are not in it, and
    against its seal (count, last record), which shows records deleted from it."""
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
        rows.append((seq, canonical(doc), prev, digest))
    if last is None:
        return Report(
            problems=[Problem(0, "the export has no anchor line: not an export of this trail, or cut short")],
            chain_end=rows[-1][0] if rows else 0,
        )
    report = Report(chain_end=rows[-1][0] if rows else 0)
    sealed, tenant = _unseal(last.get("export"), rows, public, report)
    if tenant is None and (sealed or [r[0] for r in rows] == list(range(1, len(rows) + 1))):
        whole = against(rows, last[EXPORT_KEY], public)
        whole.problems[:0] = report.problems
        return whole
    who = "an unsealed trail" if tenant is None else f"the trail of tenant {tenant!r}"
    report.notes.append(f"{who}: links to other tenants' records cannot be checked")
    if tenant is not None and tenants - {tenant}:
        report.problems.append(Problem(0, f"records of other tenants in tenant {tenant!r}'s export"))
    for i, (seq, record, prev, digest) in enumerate(rows):
        if audit.record_hash(seq, prev, json.loads(record)) != digest:
            report.problems.append(Problem(seq, "content does not match its hash (edited?)"))
        if i and rows[i - 1][0] == seq - 1 and rows[i - 1][3] != prev:
            report.problems.append(
                Problem(seq, "does not link to the record before it (deleted or reordered?)")
            )
    if last[EXPORT_KEY] is not None:
        head, problems = check(last[EXPORT_KEY], public)
        report.problems += [Problem(0, p) for p in problems]
        report.anchor = head
    return report

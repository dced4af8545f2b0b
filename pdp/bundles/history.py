"""The bundle revisions a PDP activated: which, when, the bundle's digest and who signed it.

OPA reports only the revision it serves now (GET /v1/status), so the embedded PDP keeps the
history itself: one JSON line per activation in `<state>/bundle-revisions.jsonl`, appended (the
file is opened O_APPEND and never rewritten), owner-only (0600). Each line carries the SHA-256 of
the line before it, so a line removed or edited in the middle shows (`verify`). The last line is
the revision the PDP decides on.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

HISTORY_FILE = "bundle-revisions.jsonl"
GENESIS = "0" * 64


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def signer_of(public_key: Path | None) -> str:
    """The signing key, named by the SHA-256 of its public key (DER SubjectPublicKeyInfo)."""
    if public_key is None or not public_key.exists():
        return "unsigned"
    key = serialization.load_pem_public_key(public_key.read_bytes())
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()[:32]


def _line_hash(line: str) -> str:
    return hashlib.sha256(line.encode()).hexdigest()


@dataclass(frozen=True)
class HistoryCheck:
    ok: bool
    problems: list[str]


class RevisionHistory:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def of_state(cls, state: Path) -> RevisionHistory:
        return cls(state / HISTORY_FILE)

    def entries(self) -> list[dict[str, Any]]:
        """Every activation, oldest first."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def active(self) -> dict[str, Any] | None:
        found = self.entries()
        return found[-1] if found else None

    def record(
        self, revision: str, *, bundle: Path | None, public_key: Path | None, engine: str
    ) -> dict[str, Any] | None:
        """Append the activation of `revision`, unless it is already the active one (a restart
        on the same bundle is not a new activation). Returns the entry appended, if any."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
            # One writer at a time across processes (`serve --workers`, the lifecycle's rebuilds):
            # the previous line's hash must be the line actually before this one.
            fcntl.flock(fd, fcntl.LOCK_EX)
            with open(fd, "r", closefd=False) as existing:  # noqa: UP015 (the fd is read-write)
                lines = [line.rstrip("\n") for line in existing if line.strip()]
            last = json.loads(lines[-1]) if lines else None
            if last is not None and last.get("revision") == revision:
                return None
            entry = {
                "revision": revision,
                "activated_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "digest": file_digest(bundle) if bundle is not None and bundle.exists() else "",
                "signer": signer_of(public_key),
                "engine": engine,
                "previous": _line_hash(lines[-1]) if lines else GENESIS,
            }
            os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
            return entry
        finally:
            os.close(fd)

    def verify(self) -> HistoryCheck:
        """Each line names the hash of the one before it."""
        problems = []
        previous = GENESIS
        if self.path.exists():
            lines = [line for line in self.path.read_text().splitlines() if line.strip()]
            for number, line in enumerate(lines, start=1):
                try:
                    entry = json.loads(line)
                except ValueError:
                    problems.append(f"line {number}: not JSON")
                    previous = _line_hash(line)
                    continue
                if entry.get("previous") != previous:
                    revision = entry.get("revision")
                    problems.append(f"line {number} ({revision}): the line before it was changed or removed")
                previous = _line_hash(line)
        return HistoryCheck(not problems, problems)

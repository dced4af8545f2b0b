"""Bearer tokens of the decision fronts (HTTP and gRPC), each bound to a principal, read from a
file that can be rotated in place.

One entry a line, `PRINCIPAL TOKEN` (blank lines and `#` comments ignored), the principal being
`admin`, `tenant:NAME` or `substrate:NAME` (`substrate:slurm`, `substrate:kueue`): that principal,
not what the caller writes in its intent, is who asked (pdp/api/auth.py), and a tenant may ask
only about itself. A line holding a token alone (the format before principals) is read as
`admin`, with a warning naming the file on every read: such a token could already ask anything, so
reading it as admin widens nothing, and refusing it would stop every caller (the Slurm hook among
them, which then refuses every GPU job) at the first start after an upgrade.

A rotation adds the new entry, lets callers move over, then removes the old one, with no restart:
the file is read again whenever its size, mtime or inode changes. Only SHA-256 digests are kept in
memory and the comparison is constant-time. A file readable by group or others is refused, like
ssh refuses a private key: a token anyone on the host can read is no credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from pdp.schemas.names import is_dns_label

log = logging.getLogger(__name__)

ROLES = ("admin", "tenant", "substrate")


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Principal:
    """Who a caller is, as its credential says: `admin`, `tenant:NAME` or `substrate:NAME`; or
    `local`, an unauthenticated caller on loopback or a unix socket (development, no token file)."""

    role: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.role}:{self.name}" if self.name else self.role

    @classmethod
    def parse(cls, text: str) -> Principal:
        role, sep, name = text.partition(":")
        if role == "admin" and not sep:
            return ADMIN
        if role in ("tenant", "substrate") and is_dns_label(name):
            return cls(role, name)
        raise ValueError(
            f"principal {text!r}: expected admin, tenant:NAME or substrate:NAME (NAME lowercase letters, "
            "digits and '-')"
        )


ADMIN = Principal("admin")
LOCAL = Principal("local")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _entries(path: Path, text: str) -> tuple[dict[bytes, Principal], int]:
    """Digest -> principal, and how many lines held a token alone (read as admin)."""
    entries: dict[bytes, Principal] = {}
    bare = 0
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) == 1:
            bare += 1
            principal, token = ADMIN, fields[0]
        elif len(fields) == 2:
            try:
                principal = Principal.parse(fields[0])
            except ValueError as exc:
                raise TokenFileError(f"{path}:{number}: {exc}") from None
            token = fields[1]
        else:
            raise TokenFileError(f"{path}:{number}: expected PRINCIPAL TOKEN (or a token alone: admin)")
        digest = _digest(token)
        if entries.get(digest, principal) != principal:
            # One token, two principals: which one asked could not be told.
            raise TokenFileError(f"{path}:{number}: this token is given another principal on an earlier line")
        entries[digest] = principal
    return entries, bare


def _private(st: os.stat_result) -> bool:
    """Nobody but this process may read the file: mode 0600, or 0440/0640 when its group is one of
    this process's groups and its owner root or this user. The second is how Kubernetes mounts a
    Secret for a non-root pod (owner root, group the pod's fsGroup, `defaultMode: 0440`): no other
    user of the node is in that group."""
    mode = stat.S_IMODE(st.st_mode)
    if mode & stat.S_IRWXO or mode & (stat.S_IWGRP | stat.S_IXGRP):
        return False
    if not mode & stat.S_IRGRP:
        return True
    return st.st_gid in {os.getegid(), *os.getgroups()} and st.st_uid in {0, os.geteuid()}


def _read(path: Path) -> tuple[tuple[int, int, int], dict[bytes, Principal]]:
    try:
        st = path.stat()
    except OSError as exc:
        raise TokenFileError(f"{path}: {exc.strerror}") from exc
    if not _private(st):
        raise TokenFileError(f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets others read it; chmod 600")
    entries, bare = _entries(path, path.read_text())
    if not entries:
        raise TokenFileError(f"{path}: holds no token")
    if bare:
        log.warning(
            "%s: %d token(s) without a principal, read as admin (may ask about any tenant, recorded as "
            "admin); write each as 'PRINCIPAL TOKEN' (tenant:NAME, substrate:NAME or admin)",
            path,
            bare,
        )
    return (st.st_ino, st.st_size, st.st_mtime_ns), entries


class BearerTokens:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp, self._entries = _read(path)

    @classmethod
    def write_new(cls, path: Path, token: str, principal: Principal | str | None = None) -> BearerTokens:
        """Write `token` as the only token of a new 0600 file (tests, first setup); without a
        principal, in the format before principals (read as admin)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{principal} {token}\n" if principal is not None else token + "\n")
        return cls(path)

    def _current(self) -> dict[bytes, Principal]:
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            # A file caught mid-rotation (removed, then renamed in): keep the tokens already read.
            return self._entries
        if stamp != self._stamp:
            # A half-written or loosened file never widens access: keep the last good set.
            with self._lock, contextlib.suppress(TokenFileError, OSError):
                self._stamp, self._entries = _read(self.path)
        return self._entries

    def principal_of(self, token: str) -> Principal | None:
        """The principal `token` is bound to; None for a token the file does not hold."""
        candidate = _digest(token)
        # Every stored digest is compared, so timing does not tell which one (or whether one) matched.
        found: Principal | None = None
        for known, principal in self._current().items():
            if hmac.compare_digest(candidate, known):
                found = principal
        return found

    def accepts(self, token: str) -> bool:
        return self.principal_of(token) is not None

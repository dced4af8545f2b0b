"""Bearer tokens of the HTTP decision API, read from a file that can be rotated in place.

The file holds one token per line (blank lines and `#` comments ignored), so a rotation adds the
new token, lets callers move over, then removes the old one, with no restart: the file is read
again whenever its size, mtime or inode changes. Only SHA-256 digests are kept in memory and the
comparison is constant-time. A file readable by group or others is refused, like ssh refuses a
private key: a token anyone on the host can read is no credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import stat
import threading
from pathlib import Path


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file and the problem."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _read(path: Path) -> tuple[tuple[int, int, int], frozenset[bytes]]:
    try:
        st = path.stat()
    except OSError as exc:
        raise TokenFileError(f"{path}: {exc.strerror}") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TokenFileError(f"{path}: mode {stat.S_IMODE(st.st_mode):04o} lets others read it; chmod 600")
    tokens = frozenset(
        _digest(line.strip())
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    if not tokens:
        raise TokenFileError(f"{path}: holds no token")
    return (st.st_ino, st.st_size, st.st_mtime_ns), tokens


class BearerTokens:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp, self._tokens = _read(path)

    @classmethod
    def write_new(cls, path: Path, token: str) -> BearerTokens:
        """Write `token` as the only token of a new 0600 file (tests, first setup)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return cls(path)

    def _current(self) -> frozenset[bytes]:
        try:
            st = self.path.stat()
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            # A file caught mid-rotation (removed, then renamed in): keep the tokens already read.
            return self._tokens
        if stamp != self._stamp:
            # A half-written or loosened file never widens access: keep the last good set.
            with self._lock, contextlib.suppress(TokenFileError, OSError):
                self._stamp, self._tokens = _read(self.path)
        return self._tokens

    def accepts(self, token: str) -> bool:
        candidate = _digest(token)
        # Every stored digest is compared, so timing does not tell which one (or whether one) matched.
        matched = False
        for known in self._current():
            matched |= hmac.compare_digest(candidate, known)
        return matched

"""The console's sessions, held by the server: the browser's cookie carries a random session id and
nothing else; which token the session was opened with (its id, never the token) stays here.

- A session ends on sign-out (removed here, so a copy of the cookie is worth nothing), after
  IDLE_SECONDS without a page, ABSOLUTE_SECONDS after sign-in whatever its use, and as soon as the
  token behind it is no longer valid (session.viewer checks the token by its id on every page:
  a rotation revokes it).
- Kept in the worker process's memory, not in the lifecycle's database. The console already needs
  one process per browser: its CSRF key is per process, so a form served by one replica is
  refused by another, and several replicas need session affinity for the console either way. In
  memory, a session exists in exactly one place, cannot outlive the process, and leaves no table
  of live session ids to leak or clean up; a restart signs everyone out, which errs on the safe
  side.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

IDLE_SECONDS = 30 * 60
ABSOLUTE_SECONDS = 12 * 3600
# Per token: signing in again and again (a script, many tabs) cannot grow the table without
# bound; the oldest sessions of that token make room.
MAX_PER_TOKEN = 16


@dataclass
class _Session:
    token_id: str
    opened: float
    seen: float


def _key(session_id: str) -> str:
    # Stored under a digest: how long a lookup of a guessed id takes says nothing about the ids held.
    return hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    def __init__(
        self,
        *,
        idle: float = IDLE_SECONDS,
        absolute: float = ABSOLUTE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle = idle
        self.absolute = absolute
        self.clock = clock
        self._held: dict[str, _Session] = {}
        self._lock = threading.Lock()  # the console's sync routes run on a thread pool

    def open(self, token_id: str) -> str:
        """A new session for the token named `token_id`; the id to put in the cookie."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._drop_expired(now)
            same = sorted((s.opened, k) for k, s in self._held.items() if s.token_id == token_id)
            for _, key in same[: max(0, len(same) - MAX_PER_TOKEN + 1)]:
                del self._held[key]
            self._held[_key(session_id)] = _Session(token_id, now, now)
        return session_id

    def token_id(self, session_id: str) -> str | None:
        """The token id of a live session (and it counts as used now); None when there is no such
        session or it expired (then it is gone)."""
        key, now = _key(session_id), self.clock()
        with self._lock:
            found = self._held.get(key)
            if found is None:
                return None
            if self._expired(found, now):
                del self._held[key]
                return None
            found.seen = now
            return found.token_id

    def close(self, session_id: str) -> None:
        with self._lock:
            self._held.pop(_key(session_id), None)

    def __len__(self) -> int:
        return len(self._held)

    def _expired(self, s: _Session, now: float) -> bool:
        return now - s.seen >= self.idle or now - s.opened >= self.absolute

    def _drop_expired(self, now: float) -> None:
        for key in [k for k, s in self._held.items() if self._expired(s, now)]:
            del self._held[key]

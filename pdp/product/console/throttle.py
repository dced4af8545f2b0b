"""How often the console's sign-in may be tried: a token bucket per source address and one per
account (a tenant's name, or "admin").

- Every attempt spends one from both buckets *before* its token is checked, so a refused attempt
  (429, Retry-After) says nothing about the guess, and concurrent guesses cannot all pass before
  the first failure is counted. A sign-in that succeeds gets its spending back: people who sign
  in are never throttled by their own successes.
- Per source, one address cannot guess faster than its bucket refills, whatever account it names;
  per account, many addresses together cannot either. The buckets of other accounts and other
  addresses are untouched, so failures against one tenant never delay another tenant's sign-in.
  The price: whoever floods one account's sign-in from many addresses delays that account's
  sign-in to one attempt per refill while it lasts (sessions already open and the API's tokens
  are unaffected).
- In the worker process's memory, like the sessions (pdp/product/console/sessions.py); a bucket
  that has refilled is forgotten.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rate:
    burst: int  # attempts allowed at once
    every: float  # seconds to regain one


PER_SOURCE = Rate(burst=5, every=12.0)
PER_ACCOUNT = Rate(burst=10, every=6.0)
# Beyond this many remembered buckets, the full ones are forgotten (at most once a second).
PRUNE_ABOVE = 10_000


class _Buckets:
    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self._level: dict[str, tuple[float, float]] = {}  # key -> (attempts left, when)

    def left(self, key: str, now: float) -> float:
        level, at = self._level.get(key, (float(self.rate.burst), now))
        return min(float(self.rate.burst), level + (now - at) / self.rate.every)

    def wait(self, key: str, now: float) -> float:
        return max(0.0, (1.0 - self.left(key, now)) * self.rate.every)

    def add(self, key: str, now: float, amount: float) -> None:
        self._level[key] = (min(float(self.rate.burst), self.left(key, now) + amount), now)

    def forget_full(self, now: float) -> None:
        for key in [k for k in self._level if self.left(k, now) >= self.rate.burst]:
            del self._level[key]

    def __len__(self) -> int:
        return len(self._level)


class LoginThrottle:
    def __init__(
        self,
        *,
        per_source: Rate = PER_SOURCE,
        per_account: Rate = PER_ACCOUNT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self._sources = _Buckets(per_source)
        self._accounts = _Buckets(per_account)
        self._lock = threading.Lock()  # the console's sync routes run on a thread pool
        self._pruned = 0.0

    def attempt(self, source: str, account: str) -> int:
        """0 when this attempt may go on (it is counted), else the seconds to wait (Retry-After)."""
        account = _account_key(account)
        now = self.clock()
        with self._lock:
            self._prune(now)
            wait = max(self._sources.wait(source, now), self._accounts.wait(account, now))
            if wait > 0:
                return max(1, math.ceil(wait))
            self._sources.add(source, now, -1.0)
            self._accounts.add(account, now, -1.0)
            return 0

    def succeeded(self, source: str, account: str) -> None:
        """The attempt signed in: it costs nothing."""
        account = _account_key(account)
        now = self.clock()
        with self._lock:
            self._sources.add(source, now, 1.0)
            self._accounts.add(account, now, 1.0)

    def _prune(self, now: float) -> None:
        if len(self._sources) + len(self._accounts) <= PRUNE_ABOVE or now - self._pruned < 1.0:
            return
        self._pruned = now
        self._sources.forget_full(now)
        self._accounts.forget_full(now)


def _account_key(account: str) -> str:
    # Case and spacing do not make a fresh bucket; a long name is cut (tenant names are short).
    return account.strip().lower()[:128]

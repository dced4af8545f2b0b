"""The wasm engine's pool of instances: one evaluation per instance at a time, the most recently
used handed out first (its memory is the warmest).

Why not `queue.LifoQueue`: its get and put each take a lock and notify a condition, about 5 us of
every decision, although an instance is almost always free (inline on the event loop, one
evaluation runs at a time). Here a free instance is a list pop, atomic under the GIL; only a
caller that finds none waits on the condition."""

from __future__ import annotations

import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class InstancePool(Generic[T]):
    def __init__(self) -> None:
        self._free: list[T] = []
        self._available = threading.Condition(threading.Lock())
        self._waiting = 0  # changed under the condition's lock only

    @property
    def idle(self) -> list[T]:
        """The instances free now (a copy)."""
        return list(self._free)

    def put(self, item: T) -> None:
        self._free.append(item)
        # A waiter counts itself under the lock before its last look at the list, and waits
        # releasing that lock atomically: it saw this item, or this notify reaches it.
        if self._waiting:
            with self._available:
                self._available.notify()

    def get(self, timeout: float) -> T | None:
        """An instance, or None when none came free within `timeout` seconds."""
        try:
            return self._free.pop()
        except IndexError:
            pass
        deadline = time.monotonic() + timeout
        with self._available:
            self._waiting += 1
            try:
                while True:
                    try:
                        return self._free.pop()
                    except IndexError:
                        pass
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    self._available.wait(left)
            finally:
                self._waiting -= 1

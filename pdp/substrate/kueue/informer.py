"""List+watch with the official kubernetes client, and a de-duplicating work queue: the two pieces
of a controller-runtime style controller, in the small.

The informer lists, hands every object to its callback, then watches from the list's
resourceVersion; an expired watch (410 Gone) or any error lists again (after a backoff), and a
full list runs every `resync` seconds anyway, so an event lost in between is made good.

The queue holds keys, not objects: a key added while it waits is not added twice, and a key added
while it is being processed is processed again once after, so the processor always reads the
object fresh and the last change is never lost.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import watch

log = logging.getLogger("pdp.kueue")

Handler = Callable[[str, dict[str, Any]], None]


class Informer:
    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        handler: Handler,
        stop: threading.Event,
        *,
        resync: float = 300.0,
        watch_timeout: int = 30,
        backoff: float = 1.0,
    ) -> None:
        self.name = name
        self.list_fn = list_fn
        self.handler = handler
        self.stop = stop
        self.resync = resync
        self.watch_timeout = watch_timeout
        self.backoff = backoff
        self.synced = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"informer-{name}", daemon=True)

    def start(self) -> Informer:
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                self._list_and_watch()
                failures = 0
            except Exception as exc:  # the API server restarting, a network error, a 410
                failures += 1
                delay = min(30.0, self.backoff * 2 ** min(failures, 5))
                log.warning("%s: list/watch failed (%s); again in %.0f s", self.name, str(exc)[:300], delay)
                self.stop.wait(delay)

    def _list_and_watch(self) -> None:
        listing = self.list_fn(_request_timeout=60)
        for item in listing.get("items") or ():
            self.handler("SYNC", item)
        self.synced.set()
        version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
        until = time.monotonic() + self.resync
        while not self.stop.is_set() and time.monotonic() < until:
            w = watch.Watch()  # type: ignore[no-untyped-call]
            # timeout_seconds: the server ends the watch, so a stop is seen within that bound.
            for event in w.stream(  # type: ignore[no-untyped-call]
                self.list_fn,
                resource_version=version,
                timeout_seconds=self.watch_timeout,
                allow_watch_bookmarks=True,
                _request_timeout=self.watch_timeout + 30,
            ):
                obj = event.get("raw_object") or {}
                version = str((obj.get("metadata") or {}).get("resourceVersion", version))
                if event.get("type") != "BOOKMARK":
                    self.handler(str(event.get("type")), obj)
                if self.stop.is_set():
                    w.stop()  # type: ignore[no-untyped-call]
                    break


class WorkQueue:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ready: dict[str, None] = {}  # insertion-ordered set
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._later: list[tuple[float, str]] = []
        self._closed = False

    def add(self, key: str) -> None:
        with self._cond:
            if key in self._processing:
                self._dirty.add(key)
            elif key not in self._ready:
                self._ready[key] = None
                self._cond.notify()

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            heapq.heappush(self._later, (time.monotonic() + delay, key))
            self._cond.notify()

    def _promote(self, now: float) -> None:
        while self._later and self._later[0][0] <= now:
            _, key = heapq.heappop(self._later)
            if key in self._processing:
                self._dirty.add(key)
            else:
                self._ready.setdefault(key, None)

    def get(self, timeout: float = 1.0) -> str | None:
        """The next key (marked as being processed), or None after `timeout` or once closed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                self._promote(now)
                if self._ready:
                    key = next(iter(self._ready))
                    del self._ready[key]
                    self._processing.add(key)
                    return key
                wait = deadline - now
                if self._later:
                    wait = min(wait, self._later[0][0] - now)
                if deadline <= now:
                    return None
                self._cond.wait(max(wait, 0.001))
            return None

    def done(self, key: str) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._ready.setdefault(key, None)
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._ready) + len(self._later)

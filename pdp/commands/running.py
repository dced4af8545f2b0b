"""Long-running commands: stop on SIGINT/SIGTERM, and stop what was started in reverse order."""

from __future__ import annotations

import gc
import os
import signal
import threading
from typing import Any


def stop_on_signals() -> threading.Event:
    """An event SIGINT/SIGTERM set. Installed before anything starts: a signal that arrives while
    the servers come up ends them cleanly once they are up, instead of killing the process."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def serve_until_signal(server: Any, stop: threading.Event, *, parent: int | None = None) -> None:
    """Serve until `stop` is set (or, for a worker, until its parent is gone)."""
    # What is set up by now (modules, bundle, engine, caches) lives as long as the process:
    # frozen out of the cyclic collector's way, a full collection walks only what requests
    # created since. Unfrozen, the full collections a 1.3 MB scheduler extender request tips
    # over walked the whole heap: 60-130 ms of CPU inside that request (bench/extender_cpu.py).
    gc.collect()
    gc.freeze()
    while not stop.wait(1.0):
        if parent is not None and os.getppid() != parent:
            break
    server.stop()


class Servers:
    """Stops what was started, last started first."""

    def __init__(self) -> None:
        self.parts: list[Any] = []

    def add(self, part: Any) -> Any:
        if part is not None:  # an optional part that was not asked for
            self.parts.append(part)
        return part

    def stop(self) -> None:
        for part in reversed(self.parts):
            part.stop()

"""`pdp serve` freezes what it set up out of the cyclic collector's way (bench/extender_cpu.py:
unfrozen, a full collection inside a large scheduler extender request cost 60-130 ms of CPU)."""

from __future__ import annotations

import gc
import threading

from pdp.commands.running import serve_until_signal


class _Part:
    stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_serving_freezes_what_was_set_up_and_still_stops() -> None:
    set_up = [{"kept": i} for i in range(1000)]  # long-lived containers, as a server's caches
    stop = threading.Event()
    stop.set()
    part = _Part()
    gc.unfreeze()
    try:
        serve_until_signal(part, stop)
        assert gc.get_freeze_count() >= len(set_up)
        assert part.stopped
    finally:
        gc.unfreeze()

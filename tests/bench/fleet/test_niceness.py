"""The simulator's own work (KWOK, the replayer's threads) runs at a lower priority than the
components measured; the replayer's main thread, which starts those components, keeps its own."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from bench.fleet.niceness import SIMULATOR_NICE, lower_this_thread, niced


def _nice_of_thread(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def test_a_lowered_thread_yields_and_the_main_thread_does_not() -> None:
    main_before = _nice_of_thread(threading.get_native_id())
    seen: list[int] = []

    def work() -> None:
        lower_this_thread()
        seen.append(_nice_of_thread(threading.get_native_id()))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [SIMULATOR_NICE] and SIMULATOR_NICE > 0
    assert _nice_of_thread(threading.get_native_id()) == main_before


def test_a_simulator_process_starts_at_the_lower_priority() -> None:
    argv = niced([sys.executable, "-c", "import os; print(os.nice(0))"])
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert int(done.stdout) == os.nice(0) + SIMULATOR_NICE

"""The simulator's own work (KWOK, the replayer's threads) runs at a lower priority than the
components measured; the replayer's main thread, which starts those components, keeps its own;
the PDP runs ahead of them all where the machine allows it, and the report says at what niceness
each process ran."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from bench.fleet.niceness import PDP_NICE, SIMULATOR_NICE, favoured, lower_this_thread, niced
from bench.fleet.report import usage


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


def test_the_pdp_starts_ahead_of_the_cluster_where_the_machine_allows_it() -> None:
    argv = favoured([sys.executable, "-c", "import os; print(os.nice(0))"])
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    # Raising a priority needs CAP_SYS_NICE: without it `nice` warns and keeps the parent's.
    expected = PDP_NICE if os.geteuid() == 0 else os.nice(0)
    assert PDP_NICE < 0 and int(done.stdout) == expected


def test_the_report_reads_the_niceness_a_process_runs_at() -> None:
    child = subprocess.Popen(niced([sys.executable, "-c", "import time; time.sleep(30)"]))
    try:
        deadline = time.monotonic() + 10
        while (seen := usage(child.pid)) is None or seen.nice != os.nice(0) + SIMULATOR_NICE:
            assert time.monotonic() < deadline, f"usage saw {seen}"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()

"""The bench's reading of hypervisor steal from /proc/stat, and the processes it counts as a
server's."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.harness import children, descendants, steal_and_total

STAT = """cpu  4705 356 584 3699 23 0 14 91 12 0
cpu0 1393280 32966 572056 13343292 6130 0 17875 45 0 0
intr 114930548 113199788 3 0 5 263 0 0 0 1 0
"""


def test_steal_is_the_eighth_field_of_the_cpu_line_and_guest_time_is_not_counted_twice() -> None:
    # user..steal sum to 9,472; guest (12) is inside user already.
    assert steal_and_total(STAT) == (91, 4705 + 356 + 584 + 3699 + 23 + 0 + 14 + 91)


def test_a_stat_without_a_cpu_line_is_refused() -> None:
    with pytest.raises(ValueError, match="no cpu line"):
        steal_and_total("intr 1 2 3\n")


# Starts `python -c ARGS...` and sleeps: given itself first, a process that starts one that starts one.
SPAWN = (
    "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', *sys.argv[1:]]); time.sleep(30)"
)


def test_a_servers_cost_counts_its_grandchildren() -> None:
    """A webhook worker's decision-log committer is the server's grandchild: its CPU is the
    server's too (children alone missed it)."""
    top = subprocess.Popen([sys.executable, "-c", SPAWN, SPAWN, "import time; time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while len(descendants(top.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        (child,) = children(top.pid)
        (grandchild,) = children(child)
        assert sorted(descendants(top.pid)) == sorted([child, grandchild])
    finally:
        for pid in descendants(top.pid):
            subprocess.run(["kill", str(pid)], check=False)
        top.kill()
        top.wait()

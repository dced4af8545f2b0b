"""Freezing a process for the fail-closed tests, and a CPU hog to run them beside.

`kill(pid, SIGSTOP)` only queues the signal: the kernel wakes one thread of the target, and that
thread stops the others when it next runs. Until then the process's other threads keep running,
so OPA can still accept and answer a request sent right after `kill` returned. On a busy machine
that window is milliseconds long, longer than one decision: with four busy loops on two cores, 19
decisions in 100 sent right after `kill(SIGSTOP)` were ALLOW, answered by threads that had not
stopped yet (and 6 in 100 on the shared machine without a hog). `frozen` returns only once every
thread of the process is in the stopped state, so nothing the test sends can be answered before
SIGCONT.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

_STOPPED = "T"


def thread_states(pid: int) -> list[str]:
    """The scheduler state letter of every thread of `pid` (R, S, D, T, ...), from /proc."""
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread exited meanwhile
        # The command name in parentheses may contain spaces; the state follows its closing one.
        states.append(stat.rsplit(")", 1)[1].split()[0])
    return states


def wait_stopped(pid: int, timeout: float = 10.0) -> None:
    """Return once every thread of `pid` has stopped (the SIGSTOP group stop is complete)."""
    deadline = time.monotonic() + timeout
    while True:
        states = thread_states(pid)
        if states and all(state == _STOPPED for state in states):
            return
        assert time.monotonic() < deadline, f"pid {pid} not stopped after {timeout}s: {states}"
        time.sleep(0.001)


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """`pid` stopped (every thread of it) for the duration of the block, then continued. A process
    killed meanwhile (a supervisor replacing it) is not an error on the way out."""
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_stopped(pid)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def cpu_hog(enabled: bool = True, per_core: int = 2) -> Iterator[None]:
    """Busy loops, `per_core` per core, for the duration of the block: the machine as saturated
    as it was when the fail-closed tests first saw an ALLOW."""
    if not enabled:
        yield
        return
    count = per_core * (os.cpu_count() or 1)
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
        for hog in hogs:
            hog.wait()

"""The simulator's own work yields the CPU to the system under test.

KWOK stands for the fleet's kubelets and the replayer's threads for its users: in a cluster they
run on other machines. Here they share two cores with the control plane, Kueue and the PDP, so
they run at a lower priority (nice 10, in both runs): when the CPU is contended the components
measured go first, and when it is not, nothing changes. The replayer's main thread starts the
components (children inherit a thread's niceness) and keeps its own.
"""

from __future__ import annotations

import os
import threading

SIMULATOR_NICE = 10


def lower_this_thread() -> None:
    """This thread (Linux gives each its own niceness) yields to the components measured."""
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SIMULATOR_NICE)


def niced(argv: list[str]) -> list[str]:
    """A simulator process's command line, started at the simulator's niceness."""
    return ["nice", "-n", str(SIMULATOR_NICE), *argv]

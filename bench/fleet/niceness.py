"""Who goes first on the two cores the whole cluster shares.

KWOK stands for the fleet's kubelets and the replayer's threads for its users: in a cluster they
run on other machines. Here they share two cores with the control plane, Kueue and the PDP, so
they run at a lower priority (nice 10, in both runs): when the CPU is contended the components
measured go first, and when it is not, nothing changes. The replayer's main thread starts the
components (children inherit a thread's niceness) and keeps its own.

The PDP (`pdp serve` and its webhook processes) runs at nice -5 in the policy run: the chart
gives its pod CPU requests, which on a node of its own (kube-apiserver's webhook and
kube-scheduler's extender call it over the network) it gets when it asks. Here kube-apiserver
alone burns about a core in bursts, and a review whose decision takes 1-2 ms waited for a core
behind it: webhook p99 9.7-20.1 ms at nice 0 in slice runs of the same code, its decisions under
2.5 ms at p99.5 (docs/fleet-simulation.md). The PDP uses a fifth of a core on average, so what it
takes first costs the others little. Raising a priority needs CAP_SYS_NICE; without it `nice`
warns and runs the PDP at its parent's niceness, and the report's component table shows the
niceness each process ran at.
"""

from __future__ import annotations

import os
import threading

SIMULATOR_NICE = 10
PDP_NICE = -5


def lower_this_thread() -> None:
    """This thread (Linux gives each its own niceness) yields to the components measured."""
    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SIMULATOR_NICE)


def niced(argv: list[str]) -> list[str]:
    """A simulator process's command line, started at the simulator's niceness."""
    return ["nice", "-n", str(SIMULATOR_NICE), *argv]


def favoured(argv: list[str]) -> list[str]:
    """The PDP's command line, started ahead of the cluster it shares the cores with."""
    return ["nice", "-n", str(PDP_NICE), *argv]

"""How many CPUs this process may use: the worker count `--webhook-workers auto` starts.

One Python process decides on one core (the GIL), so a pod uses its CPU with one process per core
it may use: the container's CPU limit (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`), rounded up,
and never more than the cores the process may run on (`os.sched_getaffinity`). Without a CPU
limit a pod may run on every core of its node: then at most `UNLIMITED_CAP` processes (each holds
its own wasm instances and copy of the bundle's data), which --webhook-workers N overrides.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
UNLIMITED_CAP = 8


def _quota(cgroup: Path) -> float | None:
    """The CPU limit in cores, or None for none."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def usable_cpus(cgroup: Path = CGROUP) -> int:
    """At least 1: the cores this process may run on, capped by its container's CPU limit."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _quota(cgroup)
    cores = min(cores, math.ceil(quota)) if quota is not None else min(cores, UNLIMITED_CAP)
    return max(1, cores)


def worker_count(value: str) -> int:
    """An argparse type: a positive count, or `auto` for usable_cpus()."""
    if value == "auto":
        return usable_cpus()
    try:
        count = int(value)
    except ValueError as exc:
        raise ValueError(f"{value!r}: a number or auto") from exc
    if count < 1:
        raise ValueError(f"{value!r}: at least 1")
    return count

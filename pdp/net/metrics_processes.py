"""One `/metrics` for every process of `pdp serve`: with `--webhook-workers N` or `--workers N`
(the chart's `auto` is one per CPU) the reviews and decisions of the worker processes are counted
with the main process's, by prometheus_client's multiprocess mode (each process keeps its values
in a file of a folder shared by them all; the main process's `/metrics` reads them all: counters
and histograms summed, the bundle gauges the largest of the processes alive).

The mode is chosen when prometheus_client is first imported, and `pdp serve`'s options (how many
processes) are read by a parser that imports it, so `pdp serve` always shares (pdp/cli.py, before
parsing): with one process the values go through the folder too (a few microseconds per review).
The worker processes inherit the folder through their environment. The folder is private (0700),
made for this run (values of an earlier run would be summed in) and removed when the main
process exits. Other commands (the lifecycle worker, `pdp decide`) keep the default registry.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_between_processes() -> Path | None:
    """A fresh folder for the metrics of this process and the processes it starts, when
    prometheus_client is not imported yet (else, as when the environment names a folder already,
    None: this process keeps its mode)."""
    if os.environ.get(ENV) or "prometheus_client" in sys.modules:
        return None
    folder = Path(tempfile.mkdtemp(prefix="gpupaas-metrics-"))
    os.environ[ENV] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def shared() -> bool:
    return bool(os.environ.get(ENV))


def registry() -> CollectorRegistry:
    """What `/metrics` exports: every process's values when they share them, else this process's."""
    from prometheus_client import REGISTRY

    if not shared():
        return REGISTRY
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from pdp.metrics import BUNDLE_AGE

    combined = CollectorRegistry()
    MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    # Computed when scraped, so in no file: the age as this (the main) process sees it.
    combined.register(BUNDLE_AGE)
    return combined


def process_ended(pid: int) -> None:
    """A worker process exited: its bundle gauges stop counting (its counters stay summed)."""
    if shared():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]

"""More PDP processes on the same gRPC port, so decisions use every core.

A Python process decides on one core at a time (the GIL); on the decision path that core is the
limit long before OPA or the network is (docs/performance.md). `pdp serve --workers N` starts N-1
extra processes that each bind the same port (gRPC sets SO_REUSEPORT on Linux), so the kernel
spreads new client connections over the processes. Each worker has its own engine: a client of
the one OPA sidecar, or its own wasm instances of the current bundle, which it reloads when the
bundle file is replaced; none of them builds bundles or runs the enforcement servers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pdp.net.metrics_processes import process_ended

_RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker process serves. Exactly one of opa_addr and wasm_bundle is set.
    `listen` is the gRPC address ("" for none); `webhook` the webhook's serve-worker options
    (`pdp serve --webhook-workers`, pdp/substrate/kubernetes/enforcement/launch.py)."""

    listen: str
    opa_addr: str = ""
    wasm_bundle: Path | None = None
    decision_log: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token_file: Path | None = None
    # The decision log's checkpoint and key options (`pdp.options.records_argv`).
    records: tuple[str, ...] = ()
    webhook: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        args = [sys.executable, "-m", "pdp.cli", "serve-worker", *self.webhook]
        if self.listen:
            args += ["--listen", self.listen]
        if self.opa_addr:
            args += ["--opa-addr", self.opa_addr]
        if self.wasm_bundle is not None:
            args += ["--wasm-bundle", str(self.wasm_bundle)]
        if self.decision_log is not None:
            args += ["--decision-log", str(self.decision_log), *self.records]
        if self.tls_cert is not None and self.tls_key is not None:
            args += ["--tls-cert", str(self.tls_cert), "--tls-key", str(self.tls_key)]
        if self.token_file is not None:
            args += ["--token-file", str(self.token_file)]
        return args


class WorkerProcesses:
    """Starts `count` worker processes and restarts one that exits, until stopped."""

    def __init__(self, spec: WorkerSpec, count: int) -> None:
        self.spec = spec
        self.count = count
        self._procs: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._supervise, name="pdp-workers", daemon=True)

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.spec.argv(), stdin=subprocess.DEVNULL)

    def start(self) -> WorkerProcesses:
        with self._lock:
            self._procs = [self._spawn() for _ in range(self.count)]
        self._thread.start()
        return self

    def pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in self._procs]

    def _supervise(self) -> None:
        failures = 0
        while not self._stop.wait(0.5):
            with self._lock:
                for i, proc in enumerate(self._procs):
                    if proc.poll() is None or self._stop.is_set():
                        continue
                    delay = _RESTART_BACKOFF[min(failures, len(_RESTART_BACKOFF) - 1)]
                    print(
                        f"pdp worker {proc.pid} exited with {proc.returncode}; restarting in {delay:.1f}s",
                        file=sys.stderr,
                        flush=True,
                    )
                    failures += 1
                    process_ended(proc.pid)
                    if self._stop.wait(delay):
                        return
                    self._procs[i] = self._spawn()

    def stop(self, grace: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=grace + 5)
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            process_ended(proc.pid)


class BundleFileWatcher:
    """Calls `on_change(path)` when the file at `path` is replaced (bundles are published with an
    atomic rename, so a new inode or mtime means a complete new file)."""

    def __init__(self, path: Path, on_change: Callable[[Path], None], interval: float = 0.5) -> None:
        self.path = path
        self._on_change = on_change
        self._interval = interval
        self._seen = self._identity()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bundle-watch", daemon=True)

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            now = self._identity()
            if now is None or now == self._seen:
                continue
            try:
                self._on_change(self.path)
            except Exception as exc:  # a bad bundle keeps the current one serving
                print(f"bundle {self.path} not loaded: {exc}", file=sys.stderr, flush=True)
            self._seen = now

    def start(self) -> BundleFileWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def parent_alive(parent: int) -> bool:
    """A worker whose parent died (SIGKILL gives it no chance to stop us) must not serve on."""
    return os.getppid() == parent

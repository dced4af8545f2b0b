"""The harness's plumbing: ports, the processes under test, and what each one costs (CPU and
peak memory sampled over a measurement); one row of results per path and load."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".bin"
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- processes ---------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """Children started by any thread of `pid` (each thread has its own children list)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def descendants(pid: int) -> list[int]:
    """Every process `pid` started and those they started, and so on: a server's cost includes
    its workers' and their helpers' (a decision log's committer, pdp/records/committer.py)."""
    found = children(pid)
    for child in list(found):
        found += descendants(child)
    return found


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[str]
    log: Path
    opa_pid: int | None = None

    def pids(self) -> dict[str, int]:
        out = {self.name: self.proc.pid}
        if self.opa_pid:
            # found again each time: the PDP's supervisor restarts an OPA that stops answering
            self.opa_pid = _opa_child(self.proc.pid) or self.opa_pid
            out["opa"] = self.opa_pid
        # the extra processes of `--workers N` / `--processes N`, which share the gRPC port, and
        # the decision logs' committers
        workers = [c for c in descendants(self.proc.pid) if b"python" in _cmdline(c)]
        for i, pid in enumerate(sorted(workers), start=2):
            out[f"{self.name}-{i}"] = pid
        return out

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""  # ended meanwhile


def _opa_child(pid: int) -> int | None:
    for child in children(pid):
        try:
            if "opa" in Path(f"/proc/{child}/comm").read_text():
                return child
        except OSError:
            continue
    return None


def start_server(name: str, argv: list[str], ready_text: str, workdir: Path, timeout: float = 120) -> Server:
    log = workdir / f"{name}.log"
    proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while ready_text not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()  # one that never became ready is not left running
            proc.wait()
            raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    opa = _opa_child(proc.pid)
    return Server(name, proc, log, opa)


def steal_and_total(proc_stat: str) -> tuple[int, int]:
    """The machine's stolen and total CPU time (clock ticks, all CPUs) from /proc/stat's `cpu`
    line: what the hypervisor gave other guests, and everything."""
    for line in proc_stat.splitlines():
        if line.startswith("cpu "):
            # user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is
            # already counted in user and nice.
            ticks = [int(v) for v in line.split()[1:9]]
            return ticks[7], sum(ticks)
    raise ValueError("/proc/stat has no cpu line")


def _machine_ticks() -> tuple[int, int]:
    return steal_and_total(Path("/proc/stat").read_text())


class Sampler:
    """CPU and peak memory of the given processes over one measurement, and the share of the
    machine's CPU the hypervisor stole meanwhile (a point measured under high steal is noise)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], rss_mib(pid))

    def __enter__(self) -> Sampler:
        self.t0 = time.monotonic()
        self.cpu0 = {n: cpu_seconds(p) for n, p in self.pids.items()}
        self.gen0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.ticks0 = _machine_ticks()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.elapsed = elapsed = time.monotonic() - self.t0
        gen = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = {
            n: round(100 * (cpu_seconds(p) - self.cpu0[n]) / elapsed, 1) for n, p in self.pids.items()
        }
        gen_cpu = (gen.ru_utime + gen.ru_stime) - (self.gen0.ru_utime + self.gen0.ru_stime)
        self.cpu["loadgen"] = round(100 * gen_cpu / elapsed, 1)
        for name, pid in self.pids.items():
            self.peak[name] = round(max(self.peak[name], rss_mib(pid)), 1)
        steal, total = _machine_ticks()
        self.steal_pct = round(100 * (steal - self.ticks0[0]) / max(total - self.ticks0[1], 1), 1)


@dataclass
class Results:
    rows: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        path: str,
        load: str,
        stats: dict[str, Any],
        sampler: Sampler,
        floor: str | None = None,
        peer: str | None = None,
    ) -> None:
        row = {"path": path, "load": load, **stats, "cpu_pct": sampler.cpu, "peak_rss_mib": sampler.peak}
        row["steal_pct"] = sampler.steal_pct
        if floor:
            row["floor"] = floor
        if peer:
            row["peer"] = peer
        self.rows.append(row)
        print(
            f"  {path:34} {load:14} p50 {fmt(stats['p50_ms'])} p99 {fmt(stats['p99_ms'])} "
            f"{stats['throughput']:>8}/s errors {stats['errors']} steal {sampler.steal_pct}%",
            flush=True,
        )


def fmt(ms: float | None) -> str:
    return f"{ms:8.2f} ms" if ms is not None else "       - ms"


def measure(
    results: Results,
    path: str,
    load: str,
    pids: dict[str, int],
    run: Any,
    floor: str | None = None,
    peer: str | None = None,
) -> dict[str, Any]:
    """`floor` and `peer`: the letter of the path this row is compared with in the summary."""
    with Sampler(pids) as sampler:
        stats: dict[str, Any] = run()
    results.add(path, load, stats, sampler, floor, peer)
    return stats

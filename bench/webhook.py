"""The admission webhook alone, over HTTPS keep-alive with vegeta: the (c) path of bench/run.py
at 500/s, at saturation, at 1,000/s and under open-loop overload (2x the capacity just measured),
for one or more front configurations in one run.

    .venv/bin/python -m bench.webhook --workers 1 2 [--before DIR] [--duration 5] [--loads overload]

`--before DIR`: also measure the `pdp` package of another checkout (e.g. `git archive` of the
commit before a change), started with this virtualenv. Engine: wasm (the webhook's own cost,
not the sidecar's). Prints a table and the machine's load average; JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import BIN, ROOT, Sampler, Server, descendants
from bench.inputs import admission_review
from bench.load import vegeta
from tests.ports import free_port

PY = sys.executable


def start(
    name: str,
    cwd: Path,
    work: Path,
    port: int,
    workers: int,
    cert: Path,
    key: Path,
    engine: str = "wasm",
    front: str | None = None,
) -> Server:
    """`engine` opa: the supervised OPA sidecar, as `--opa-addr` decides through one. `front`:
    `--webhook-front` (granian or uvicorn; None: the default, as shipped)."""
    argv = [PY, "-m", "pdp.cli", "serve", "--engine", engine]
    if front is not None:
        argv += ["--webhook-front", front]
    examples = work / "examples"
    argv += ["--tenants", str(examples / "tenants"), "--fleet", str(examples / "fleet.yaml")]
    argv += ["--keys", str(work / "keys"), "--bundles", str(work / f"bundles-{name}")]
    argv += ["--state", str(work / f"state-{name}"), "--listen", f"127.0.0.1:{free_port()}"]
    argv += ["--webhook-listen", f"127.0.0.1:{port}", "--webhook-cert", str(cert), "--webhook-key", str(key)]
    if workers > 1:
        argv += ["--webhook-workers", str(workers)]
    log = work / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env)
    deadline = time.monotonic() + 180
    # Every process listening: `--webhook-workers` start after the main process says it serves,
    # and a measurement taken while they load their engine measures their start-up.
    while "pdp serving on" not in log.read_text() or listeners(port) < workers:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return Server(name, proc, log)


def listeners(port: int) -> int:
    """Sockets listening on 127.0.0.1:`port` (one per process with SO_REUSEPORT)."""
    local = f"0100007F:{port:04X}"
    rows = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for row in rows if row.split()[1] == local and row.split()[3] == "0A")


LOADS = ("warm-up", "500/s", "saturation", "1000/s", "overload")


def measure_front(
    server: Server, url: str, body: bytes, duration: float, loads: tuple[str, ...] = LOADS
) -> list[dict[str, Any]]:
    """Overload offers twice the capacity measured at saturation (which runs whenever overload
    is asked for)."""
    rows = []

    def run(load: str, rate: int | None) -> dict[str, Any]:
        pids = {server.name: server.proc.pid}
        pids.update({f"{server.name}-{i}": p for i, p in enumerate(descendants(server.proc.pid), start=2)})
        with Sampler(pids) as sampler:
            stats = vegeta(url, body, rate=rate, duration=duration)
        row = {"front": server.name, "load": load, **stats, "cpu_pct": sampler.cpu}
        # The server's CPU per review answered: what overload costs it, whatever share of the
        # cores a loaded machine gave it in this measurement.
        cpu = sum(v for k, v in sampler.cpu.items() if k.startswith(server.name))
        row["server_us_per_answer"] = (
            round(cpu / 100 * sampler.elapsed / stats["answered"] * 1e6) if stats["answered"] else None
        )
        rows.append(row)
        print(
            f"  {server.name:12} {load:18} p50 {stats['p50_ms']:9.2f} ms  p99 {stats['p99_ms']:9.2f} ms  "
            f"{stats['throughput']:8.1f}/s  answered {stats['answered']} refused {stats['refused']} "
            f"timeouts {stats['timeouts']} dropped {stats['connection_errors']}  "
            f"server CPU {cpu:.0f}%, {row['server_us_per_answer']} us/answer",
            flush=True,
        )
        return stats

    if "warm-up" in loads:
        run("warm-up 200/s", 200)
    if "500/s" in loads:
        run("500/s", 500)
    if "saturation" in loads or "overload" in loads:
        capacity = run("saturation", None)["throughput"]
    if "1000/s" in loads:
        run("1000/s", 1000)
    if "overload" in loads:
        overload = max(int(2 * capacity), 200)
        run(f"overload {overload}/s", overload)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="--webhook-workers to measure")
    parser.add_argument("--before", type=Path, help="another checkout whose front to measure first")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument(
        "--loads", nargs="+", choices=LOADS, default=list(LOADS), help="which loads to measure, in this order"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not (BIN / "vegeta").exists():
        raise SystemExit(f"{BIN / 'vegeta'} missing: run scripts/bench once (it builds vegeta)")
    from pdp.net.certs import issue_server_cert, make_ca

    work = Path(tempfile.mkdtemp(prefix="pdp-bench-webhook-"))
    shutil.copytree(ROOT / "examples", work / "examples")
    ca = make_ca(work / "pki")
    tls = issue_server_cert(ca, work / "pki" / "serving", ["127.0.0.1"])
    body = admission_review()
    fronts: list[tuple[str, Path, int]] = []
    if args.before:
        fronts.append(("before", args.before.resolve(), 1))
    fronts += [(f"uvicorn-{n}p", ROOT, n) for n in args.workers]
    rows: list[dict[str, Any]] = []
    print(f"bench webhook: {work}; load average before: {os.getloadavg()}", flush=True)
    for name, cwd, workers in fronts:
        port = free_port()
        server = start(name, cwd, work, port, workers, tls.cert, tls.key)
        try:
            url = f"https://127.0.0.1:{port}/validate?timeout=10s"
            rows += measure_front(server, url, body, args.duration, tuple(args.loads))
        finally:
            server.stop()
        print(f"  load average: {os.getloadavg()}", flush=True)
    doc = {"machine": {"cpus": os.cpu_count(), "loadavg_after": os.getloadavg()}, "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CPU per admission review: the webhook's process CPU time over a fixed open-loop load divided by
the reviews answered, for this checkout and optionally another one, alternating in one run.

    .venv/bin/python -m bench.webhook_cpu [--before DIR] [--rate 300] [--duration 10] [--rounds 3]
        [--fronts granian uvicorn] [--protocols h2 h1]
        [--profile DIR]     # also py-spy record each front (collapsed stacks) in the first round

`--fronts`: this checkout's webhook served by each `--webhook-front` (default: as shipped);
`--protocols`: h2 (vegeta's default, HTTP/2 where the server offers it) and/or h1 (HTTP/1.1 only).

CPU per request is much less sensitive than throughput to other work on a shared machine (it
counts only the server's own CPU time), so it is the figure to compare changes of the front by.
Engine: wasm, the bench's AdmissionReview (bench/run.py), vegeta over HTTPS keep-alive.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.harness import ROOT, cpu_seconds, descendants
from bench.inputs import admission_review
from bench.load import vegeta
from bench.webhook import start
from tests.ports import free_port

SPY = str(Path(sys.executable).with_name("py-spy"))  # pip install py-spy: not a dependency


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--before", type=Path, help="another checkout to measure alongside")
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="write py-spy flame graphs here (first round)")
    parser.add_argument("--workers", type=int, default=1, help="--webhook-workers of this checkout")
    parser.add_argument("--fronts", nargs="+", choices=["granian", "uvicorn"], help="--webhook-front")
    parser.add_argument("--protocols", nargs="+", choices=["h2", "h1"], default=["h2"])
    args = parser.parse_args()
    from pdp.net.certs import issue_server_cert, make_ca

    work = Path(tempfile.mkdtemp(prefix="pdp-bench-webhook-cpu-"))
    shutil.copytree(ROOT / "examples", work / "examples")
    ca = make_ca(work / "pki")
    tls = issue_server_cert(ca, work / "pki" / "serving", ["127.0.0.1"])
    body = admission_review()
    fronts: list[tuple[str, Path, int, str | None]] = [
        (f"after-{front}" if front else "after", ROOT, args.workers, front) for front in args.fronts or [None]
    ]
    if args.before:
        fronts.append(("before", args.before.resolve(), 1, None))
    servers = {}
    try:
        for name, cwd, workers, front in fronts:
            port = free_port()
            servers[name] = (start(name, cwd, work, port, workers, tls.cert, tls.key, front=front), port)
        results: dict[str, list[float]] = {
            f"{name} {protocol}": [] for name, *_ in fronts for protocol in args.protocols
        }
        print(f"load average before: {os.getloadavg()}", flush=True)
        for round_ in range(args.rounds):
            for (server_name, (server, port)), protocol in itertools.product(servers.items(), args.protocols):
                name = f"{server_name} {protocol}"
                http2 = protocol == "h2"
                url = f"https://127.0.0.1:{port}/validate?timeout=10s"
                pids = [server.proc.pid, *descendants(server.proc.pid)]
                vegeta(url, body, rate=200, duration=1, http2=http2)  # warm: connections, instances
                spy = None
                if args.profile and round_ == 0:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    out = args.profile / f"{name.replace(' ', '-')}.txt"
                    spy = subprocess.Popen(
                        [SPY, "record", "-p", str(server.proc.pid), "-o", str(out), "-r", "250",
                         "-d", str(int(args.duration)), "--format", "raw", "--gil", "--nonblocking"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                before = sum(cpu_seconds(p) for p in pids)
                stats = vegeta(url, body, rate=args.rate, duration=args.duration, http2=http2)
                used = sum(cpu_seconds(p) for p in pids) - before
                if spy is not None:
                    spy.wait()
                per = 1e6 * used / max(stats["requests"], 1)
                results[name].append(per)
                print(
                    f"  {name:16} round {round_}: {per:7.0f} us CPU per review; p50 {stats['p50_ms']} ms "
                    f"p99 {stats['p99_ms']} ms; {stats['throughput']}/s; answered {stats['answered']} "
                    f"refused {stats['refused']} timeouts {stats['timeouts']}",
                    flush=True,
                )
        for name, values in results.items():
            print(f"{name}: median {statistics.median(values):.0f} us CPU per review over {values}")
        print(f"load average after: {os.getloadavg()}")
    finally:
        for server, _ in servers.values():
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CPU per admission review: the webhook's process CPU time over a fixed open-loop load divided by
the reviews answered, for this checkout and optionally another one, alternating in one run.

    .venv/bin/python -m bench.webhook_cpu [--before DIR] [--rate 300] [--duration 10] [--rounds 3]
        [--profile DIR]     # also py-spy record each front (collapsed stacks) in the first round

CPU per request is much less sensitive than throughput to other work on a shared machine (it
counts only the server's own CPU time), so it is the figure to compare changes of the front by.
Engine: wasm, the bench's AdmissionReview (bench/run.py), vegeta over HTTPS keep-alive.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench.harness import ROOT, children, cpu_seconds
from bench.inputs import admission_review
from bench.load import vegeta
from bench.webhook import start
from tests.ports import free_port


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--before", type=Path, help="another checkout to measure alongside")
    parser.add_argument("--rate", type=int, default=300)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="write py-spy flame graphs here (first round)")
    parser.add_argument("--workers", type=int, default=1, help="--webhook-workers of this checkout")
    args = parser.parse_args()
    from pdp.net.certs import issue_server_cert, make_ca

    work = Path(tempfile.mkdtemp(prefix="pdp-bench-webhook-cpu-"))
    shutil.copytree(ROOT / "examples", work / "examples")
    ca = make_ca(work / "pki")
    tls = issue_server_cert(ca, work / "pki" / "serving", ["127.0.0.1"])
    body = admission_review()
    fronts = [("after", ROOT, args.workers)] + ([("before", args.before.resolve(), 1)] if args.before else [])
    servers = {}
    try:
        for name, cwd, workers in fronts:
            port = free_port()
            servers[name] = (start(name, cwd, work, port, workers, tls.cert, tls.key), port)
        results: dict[str, list[float]] = {name: [] for name, _, _ in fronts}
        print(f"load average before: {os.getloadavg()}", flush=True)
        for round_ in range(args.rounds):
            for name, (server, port) in servers.items():
                url = f"https://127.0.0.1:{port}/validate?timeout=10s"
                pids = [server.proc.pid, *children(server.proc.pid)]
                vegeta(url, body, rate=200, duration=1)  # warm: connections, instances
                spy = None
                if args.profile and round_ == 0:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    out = args.profile / f"{name}.txt"
                    spy = subprocess.Popen(
                        ["py-spy", "record", "-p", str(server.proc.pid), "-o", str(out), "-r", "250",
                         "-d", str(int(args.duration)), "--format", "raw", "--gil", "--nonblocking"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                before = sum(cpu_seconds(p) for p in pids)
                stats = vegeta(url, body, rate=args.rate, duration=args.duration)
                used = sum(cpu_seconds(p) for p in pids) - before
                if spy is not None:
                    spy.wait()
                per = 1e6 * used / max(stats["requests"], 1)
                results[name].append(per)
                print(
                    f"  {name:7} round {round_}: {per:7.0f} us CPU per review; p50 {stats['p50_ms']} ms "
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

"""gRPC `Decide` and `DecideBatch` on the wasm engine against the no-op floor, for this checkout and
optionally another one, alternating in one run: throughput at saturation (ghz, the (e) and (f)
paths of bench/run.py) and the server's CPU per decision, which other work on a shared machine
skews much less than throughput.

    .venv/bin/python -m bench.grpc_decide [--before DIR] [--rounds 2] [--duration 5]
        [--profile DIR]     # also py-spy record each server under Decide (raw folded stacks)
        [--only decide|batch] [--no-aio]   # one scenario; without the grpc.aio no-op server
        [--workers 2]       # `pdp serve --workers 2` against the two-process no-op floor

`--before DIR`: the `pdp` package of another checkout (`git archive` of the commit before a
change), started with this virtualenv.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import PY, ROOT, Sampler, Server, start_server
from bench.inputs import INTENT
from bench.load import DECIDE, DECIDE_BATCH, ghz
from tests.ports import free_port

BATCH = 100


def serve(name: str, cwd: Path, work: Path, listen: str, workers: int = 1) -> Server:
    """`pdp serve --engine wasm` of the checkout at `cwd` (its own directory first on the path)."""
    examples = work / "examples"
    argv = [PY, "-m", "pdp.cli", "serve", "--engine", "wasm"]
    argv += ["--tenants", str(examples / "tenants"), "--fleet", str(examples / "fleet.yaml")]
    argv += ["--keys", str(work / "keys"), "--bundles", str(work / f"bundles-{name}")]
    argv += ["--state", str(work / f"state-{name}"), "--listen", listen]
    argv += ["--workers", str(workers)] if workers > 1 else []
    log = work / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    env.setdefault("PDP_OPA_BIN", str(ROOT / ".bin" / "opa"))  # a `git archive` tree has no .bin/
    proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env)
    deadline = time.monotonic() + 180
    while "pdp serving on" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return Server(name, proc, log)


def processes(server: Server, count: int, timeout: float = 60) -> dict[str, int]:
    """The server's process and, with `count` > 1, its worker processes (its children), once all
    of them run."""
    pids = {server.name: server.proc.pid}
    deadline = time.monotonic() + timeout
    while len(pids) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name}: {len(pids)} of {count} processes after {timeout} s")
        time.sleep(0.2)
        children: list[int] = []
        for task in Path(f"/proc/{server.proc.pid}/task").iterdir():
            children += [int(c) for c in (task / "children").read_text().split()]
        pids = {server.name: server.proc.pid} | {f"{server.name}-{i + 2}": c for i, c in enumerate(children)}
    return pids


def measure(
    server: Server,
    addr: str,
    call: str,
    data: Any,
    *,
    concurrency: int,
    duration: float,
    pids: dict[str, int],
    connections: int = 1,
) -> dict[str, Any]:
    with Sampler(pids) as sampler:
        stats = ghz(
            addr, call, data, rps=None, duration=duration, concurrency=concurrency, connections=connections
        )
    per = BATCH if call == DECIDE_BATCH else 1
    decisions = stats["throughput"] * per
    cpu = round(sum(sampler.cpu[name] for name in pids), 1)
    return {
        "decisions_per_s": round(decisions),
        "cpu_pct": cpu,
        "cpu_us_per_decision": round(cpu * 1e4 / decisions, 1) if decisions else None,
        "loadgen_pct": sampler.cpu["loadgen"],
        "errors": stats["errors"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--before", type=Path, help="another checkout to measure alongside")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--profile", type=Path, help="py-spy each server under Decide, first round")
    parser.add_argument("--only", choices=["decide", "batch"], help="measure only Decide or DecideBatch")
    parser.add_argument("--no-aio", action="store_true", help="skip the grpc.aio no-op floor")
    parser.add_argument("--workers", type=int, default=1, help="processes per server (pdp serve --workers)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pdp-bench-grpc-"))
    shutil.copytree(ROOT / "examples", work / "examples")
    data = {"intent": {k: INTENT[k] for k in ("tenant", "usage", "deploy_model")}}
    batch = {"intents": [data["intent"]] * BATCH}
    servers: dict[str, tuple[Server, str]] = {}
    try:
        addr = f"127.0.0.1:{free_port()}"
        noop_argv = [PY, "-m", "bench.noop_server", "--listen", addr, "--processes", str(args.workers)]
        servers["noop"] = (start_server("noop", noop_argv, "noop serving", work), addr)
        if not args.no_aio and args.workers == 1:
            addr = f"127.0.0.1:{free_port()}"
            aio_argv = [PY, "-m", "bench.noop_server", "--aio", "--listen", addr]
            servers["noop-aio"] = (start_server("noop-aio", aio_argv, "noop serving", work), addr)
        fronts = [("after", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
        for name, cwd in fronts:
            addr = f"127.0.0.1:{free_port()}"
            servers[name] = (serve(name, cwd, work, addr, args.workers), addr)
        pids = {name: processes(server, args.workers) for name, (server, _) in servers.items()}
        if args.workers > 1:
            time.sleep(15)  # a worker process loads its engine before it binds the port
        # Several connections, so that SO_REUSEPORT spreads them over the processes.
        connections = 16 if args.workers > 1 else 1
        batch_concurrency = 4 * args.workers
        print(f"bench grpc: {work}; load average {os.getloadavg()}", flush=True)
        for round_ in range(args.rounds):
            for name, (server, addr) in servers.items():
                ghz(addr, DECIDE, data, rps=None, duration=1)  # warm
                spy = None
                if args.profile and round_ == 0 and not name.startswith("noop"):
                    args.profile.mkdir(parents=True, exist_ok=True)
                    out = args.profile / f"{name}.txt"
                    spy_argv = [
                        str(Path(PY).parent / "py-spy"),
                        "record",
                        "-p",
                        str(server.proc.pid),
                        "-o",
                        str(out),
                    ]
                    spy_argv += ["-r", "250", "-d", str(int(args.duration)), "--format", "raw"]
                    spy_argv += ["--nonblocking"]
                    spy = subprocess.Popen(spy_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                none = {"decisions_per_s": "-", "cpu_us_per_decision": "-", "cpu_pct": "-"}
                none |= {"loadgen_pct": "-", "errors": "-"}
                unary, batched = none, none
                if args.only != "batch":
                    unary = measure(
                        server,
                        addr,
                        DECIDE,
                        data,
                        concurrency=32,
                        duration=args.duration,
                        pids=pids[name],
                        connections=connections,
                    )
                if spy is not None:
                    spy.wait()
                if args.only != "decide":
                    batched = measure(
                        server,
                        addr,
                        DECIDE_BATCH,
                        batch,
                        concurrency=batch_concurrency,
                        duration=args.duration,
                        pids=pids[name],
                        connections=min(connections, batch_concurrency),
                    )
                print(
                    f"  round {round_ + 1} {name:7} Decide {unary['decisions_per_s']:>6}/s "
                    f"{unary['cpu_us_per_decision']} us CPU each (server {unary['cpu_pct']}%, ghz "
                    f"{unary['loadgen_pct']}%, errors {unary['errors']})   DecideBatch x{BATCH} "
                    f"{batched['decisions_per_s']:>6} decisions/s "
                    f"{batched['cpu_us_per_decision']} us CPU each "
                    f"(server {batched['cpu_pct']}%, errors {batched['errors']})",
                    flush=True,
                )
        print(f"load average after: {os.getloadavg()}", flush=True)
    finally:
        for server, _ in servers.values():
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Where a wasm `Decide` spends the gRPC server's CPU: the PDP's own server (thread pool, health,
reflection, the tolerant deserializers) answering in four ways, measured alternately in one run:

- reply: a fixed decision, nothing decided (the floor of this server setup);
- eval: the intent translated and evaluated by the wasm engine, the fixed decision answered;
- nolog: the whole decision (validation, rendering, metrics), no decision log;
- full: the whole decision recorded in the SQLite decision log, as `pdp serve` does.

For each: decisions per second at saturation (ghz, 32 concurrent), the server's CPU and context
switches per decision, and its CPU per decision by thread (gRPC's polling thread, its worker
threads, the decision log's writer), which tells the PDP's work apart from gRPC's and from the
cost of handing each call between threads.

    .venv/bin/python -m bench.grpc_parts [--rounds 3] [--duration 5] [--parts reply eval nolog full]

Run as a server (`--serve PART ADDR`), this module is the server measured.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.harness import PY, ROOT, Server, cpu_seconds
from bench.inputs import INTENT
from bench.load import DECIDE, ghz
from tests.ports import free_port

PARTS = ("reply", "eval", "nolog", "full")


def _serve(part: str, listen: str) -> None:
    from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
    from pdp.api import servicer
    from pdp.api.translate import intent_from_proto
    from pdp.engine.wasm import WasmEngine
    from pdp.point import DECISION_PATH, DecisionPoint
    from pdp.records.log import DecisionLog, Integrity
    from tests.replay_fixtures import baseline

    state = Path(tempfile.mkdtemp(prefix="pdp-bench-parts-"))
    engine = WasmEngine(baseline(state / "build"))
    log = DecisionLog(state / "decisions.sqlite", Integrity()) if part == "full" else None
    reply = pb.DecideResponse(decision=pb.Decision(outcome=pb.ALLOW, bundle_revision="fixed"))

    class Parts(servicer.DecisionServicer):
        def Decide(self, request: pb.DecideRequest, context: Any) -> pb.DecideResponse:
            if part == "reply":
                return reply
            if part == "eval":
                engine.evaluate(DECISION_PATH, intent_from_proto(request.intent), timeout=1.0)
                return reply
            return super().Decide(request, context)

    server = _server(Parts(DecisionPoint(engine, log)), listen)
    server.start()

    def names(*_: object) -> None:
        print("threads " + json.dumps({t.native_id: t.name for t in threading.enumerate()}), flush=True)

    signal.signal(signal.SIGUSR1, names)
    print(f"parts serving {part} on {listen}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(0)
    if log is not None:
        log.close()
    engine.close()


def _server(parts: Any, listen: str) -> Any:
    """A gRPC server set up as PdpServer sets up its own (pdp/api/server.py), serving `parts`."""
    from concurrent import futures

    import grpc
    from grpc_health.v1 import health, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    from pdp.api.server import SERVICE_NAME
    from pdp.api.servicer import add_to_server

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="pdp-grpc"))
    add_to_server(parts, server)
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    server.add_insecure_port(listen)
    return server


def _threads(pid: int) -> dict[int, float]:
    out: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(task.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def _switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _names(server: Server) -> dict[int, str]:
    server.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [x for x in server.log.read_text().splitlines() if x.startswith("threads ")]
        if lines:
            return {int(k): v for k, v in json.loads(lines[-1].removeprefix("threads ")).items()}
        time.sleep(0.05)
    return {}


def _group(name: str) -> str:
    if name.startswith("pdp-grpc"):
        return "workers"
    if "_serve" in name:
        return "poller"
    return name or "other (gRPC core, unnamed)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--serve", nargs=2, metavar=("PART", "ADDR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(*args.serve)
        return 0
    work = Path(tempfile.mkdtemp(prefix="pdp-bench-parts-"))
    data = {"intent": {k: INTENT[k] for k in ("tenant", "usage", "deploy_model")}}
    servers: dict[str, tuple[Server, str]] = {}
    try:
        for part in args.parts:
            addr = f"127.0.0.1:{free_port()}"
            log = work / f"{part}.log"
            argv = [PY, "-m", "bench.grpc_parts", "--serve", part, addr]
            proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, cwd=ROOT)
            deadline = time.monotonic() + 180
            while "parts serving" not in log.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{part} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.1)
            servers[part] = (Server(part, proc, log), addr)
        print(f"bench grpc parts: {work}; load average {os.getloadavg()}", flush=True)
        for round_ in range(args.rounds):
            for part, (server, addr) in servers.items():
                pid = server.proc.pid
                ghz(addr, DECIDE, data, rps=None, duration=1)  # warm; starts the worker threads
                names = _names(server)
                cpu0, switches0, threads0 = cpu_seconds(pid), _switches(pid), _threads(pid)
                stats = ghz(addr, DECIDE, data, rps=None, duration=args.duration, concurrency=32)
                cpu1, switches1, threads1 = cpu_seconds(pid), _switches(pid), _threads(pid)
                count = stats["requests"] or 1
                by_group: dict[str, float] = {}
                for tid, seconds in threads1.items():
                    group = _group(names.get(tid, ""))
                    by_group[group] = by_group.get(group, 0.0) + seconds - threads0.get(tid, 0.0)
                ranked = sorted(by_group.items(), key=lambda item: -item[1])
                groups = ", ".join(f"{g} {s / count * 1e6:.0f}" for g, s in ranked if s > 0)
                print(
                    f"  round {round_ + 1} {part:5} {stats['throughput']:6.0f}/s  "
                    f"{(cpu1 - cpu0) / count * 1e6:5.0f} us CPU per decision ({groups})  "
                    f"{(switches1 - switches0) / count:4.1f} context switches per decision  "
                    f"errors {stats['errors']}  load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
    finally:
        for server, _ in servers.values():
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

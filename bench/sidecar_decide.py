"""gRPC `Decide` through the OPA sidecar against bare OPA driven in the same run (issue 16: the
sidecar path >= 0.8x bare OPA's capacity), for this checkout and optionally another one,
alternating in one run: the (a) and (b) paths of bench/run.py at saturation, the ratio b / a per
round, and the CPU per decision of the PDP and of OPA, which other work on a shared machine skews
less than throughput.

    .venv/bin/python -m bench.sidecar_decide [--before DIR] [--rounds 2] [--duration 5]
        [--opa unix|tcp] [--before-opa unix|tcp] [--env NAME=VALUE ...] [--rate N]

`--before DIR`: the `pdp` package of another checkout (`git archive` of the commit before a
change), started with this virtualenv. Each checkout runs its own `pdp serve` and its own OPA.
`--opa`: how this checkout's PDP reaches its OPA: a unix socket (as `pdp serve` runs by default)
or loopback TCP; bare OPA is driven by vegeta the same way. `--env`: set in this checkout's
`pdp serve` (and so its OPA's) environment only, e.g. GOMAXPROCS=1. `--rate N`: also `Decide` at
N/s (ghz's pacing), its p50 and p99.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.harness import PY, ROOT, Sampler, Server
from bench.inputs import INTENT
from bench.load import DECIDE, ghz, vegeta
from pdp.opa.binary import find_opa
from tests.ports import free_port


def serve(name: str, cwd: Path, work: Path, listen: str, opa_addr: str, extra_env: dict[str, str]) -> Server:
    """`pdp serve` (OPA sidecar engine) of the checkout at `cwd`, its OPA on `opa_addr`."""
    examples = work / "examples"
    argv = [PY, "-m", "pdp.cli", "serve", "--sidecar-addr", opa_addr]
    argv += ["--tenants", str(examples / "tenants"), "--fleet", str(examples / "fleet.yaml")]
    argv += ["--keys", str(work / "keys"), "--bundles", str(work / f"bundles-{name}")]
    argv += ["--state", str(work / f"state-{name}"), "--listen", listen]
    log = work / f"{name}.log"
    env = {"PDP_OPA_BIN": str(find_opa()), **os.environ, "PYTHONPATH": str(cwd), **extra_env}
    proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env)
    deadline = time.monotonic() + 180
    while "pdp serving on" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    server = Server(name, proc, log, opa_pid=-1)
    server.pids()  # finds the OPA child
    return server


def opa_data_posts(opa_url: str, sock: str | None) -> int:
    """POSTs to OPA's Data API answered so far (its /metrics): with the decisions made, how many
    decisions the PDP asked per request (its batches)."""
    transport = httpx.HTTPTransport(uds=sock) if sock else None
    base = opa_url.split("/v1/", 1)[0]
    with httpx.Client(transport=transport, timeout=5) as client:
        text = client.get(f"{base}/metrics").text
    return sum(
        int(float(line.rsplit(" ", 1)[1]))
        for line in text.splitlines()
        if line.startswith("http_request_duration_seconds_count{") and 'handler="v1/data"' in line
    )


def _per_decision(sampler: Sampler, rate: float) -> dict[str, Any]:
    return {n: round(cpu * 1e4 / rate) if rate else None for n, cpu in sampler.cpu.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--before", type=Path, help="another checkout to measure alongside")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--opa", choices=("unix", "tcp"), default="unix", help="this checkout's PDP to OPA")
    parser.add_argument("--before-opa", choices=("unix", "tcp"), default="unix")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--rate", type=int, help="also drive `Decide` at this rate: its p50 / p99")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pdp-bench-sidecar-"))
    shutil.copytree(ROOT / "examples", work / "examples")
    data = {"intent": {k: INTENT[k] for k in ("tenant", "usage", "deploy_model")}}
    body = json.dumps({"input": INTENT}).encode()
    servers: dict[str, tuple[Server, str, str, str | None]] = {}
    env = dict(kv.split("=", 1) for kv in args.env)
    try:
        fronts = [("after", ROOT, args.opa, env)]
        fronts += [("before", args.before.resolve(), args.before_opa, {})] if args.before else []
        for name, cwd, transport, extra_env in fronts:
            grpc_addr, opa_port = f"127.0.0.1:{free_port()}", free_port()
            sock = str(work / f"opa-{name}.sock") if transport == "unix" else None
            opa_addr = f"unix://{sock}" if sock else f"127.0.0.1:{opa_port}"
            server = serve(name, cwd, work, grpc_addr, opa_addr, extra_env)
            opa_url = f"http://127.0.0.1{'' if sock else f':{opa_port}'}/v1/data/gpupaas/decision/result"
            servers[name] = (server, grpc_addr, opa_url, sock)
        print(f"bench sidecar: {work}; load average {os.getloadavg()}", flush=True)
        for round_ in range(args.rounds):
            for name, (server, grpc_addr, opa_url, sock) in servers.items():
                ghz(grpc_addr, DECIDE, data, rps=None, duration=1)  # warm
                with Sampler(server.pids()) as bare_cpu:
                    bare = vegeta(opa_url, body, rate=None, duration=args.duration, unix_socket=sock)
                posts = opa_data_posts(opa_url, sock)
                with Sampler(server.pids()) as pdp_cpu:
                    via = ghz(grpc_addr, DECIDE, data, rps=None, duration=args.duration)
                posts = opa_data_posts(opa_url, sock) - posts
                if args.rate:
                    paced = ghz(grpc_addr, DECIDE, data, rps=args.rate, duration=args.duration)
                    print(
                        f"  round {round_ + 1} {name:6} Decide at {args.rate}/s: "
                        f"{paced['throughput']:.0f}/s, p50 {paced['p50_ms']:.2f} ms, "
                        f"p99 {paced['p99_ms']:.2f} ms, errors {paced['errors']}",
                        flush=True,
                    )
                a, b = bare["throughput"], via["throughput"]
                print(
                    f"  round {round_ + 1} {name:6} {'unix' if sock else 'tcp':4} bare OPA {a:7.0f}/s "
                    "(us CPU per decision "
                    f"{_per_decision(bare_cpu, a)}, errors {bare.get('errors')})   Decide via sidecar "
                    f"{b:7.0f}/s ({_per_decision(pdp_cpu, b)}, errors {via['errors']}, "
                    f"{via['requests'] / max(posts, 1):.2f} decisions per OPA request)   "
                    f"ratio {b / a:.2f}   load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        print(f"load average after: {os.getloadavg()}", flush=True)
    finally:
        for server, *_ in servers.values():
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

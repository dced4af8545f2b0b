"""gRPC `Decide` through the OPA sidecar against bare OPA driven in the same run (issue 16: the
sidecar path >= 0.8x bare OPA's capacity), for this checkout and optionally another one,
alternating in one run: the (a) and (b) paths of bench/run.py at saturation, the ratio b / a per
round, and the CPU per decision of the PDP and of OPA, which other work on a shared machine skews
less than throughput.

    .venv/bin/python -m bench.sidecar_decide [--before DIR] [--rounds 2] [--duration 5]

`--before DIR`: the `pdp` package of another checkout (`git archive` of the commit before a
change), started with this virtualenv. Each checkout runs its own `pdp serve` and its own OPA.
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

from bench.harness import PY, ROOT, Sampler, Server
from bench.inputs import INTENT
from bench.load import DECIDE, ghz, vegeta
from pdp.opa.binary import find_opa
from tests.ports import free_port


def serve(name: str, cwd: Path, work: Path, listen: str, opa_addr: str) -> Server:
    """`pdp serve` (OPA sidecar engine) of the checkout at `cwd`, its OPA on `opa_addr`."""
    examples = work / "examples"
    argv = [PY, "-m", "pdp.cli", "serve", "--sidecar-addr", opa_addr]
    argv += ["--tenants", str(examples / "tenants"), "--fleet", str(examples / "fleet.yaml")]
    argv += ["--keys", str(work / "keys"), "--bundles", str(work / f"bundles-{name}")]
    argv += ["--state", str(work / f"state-{name}"), "--listen", listen]
    log = work / f"{name}.log"
    env = {"PDP_OPA_BIN": str(find_opa()), **os.environ, "PYTHONPATH": str(cwd)}
    proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, cwd=cwd, env=env)
    deadline = time.monotonic() + 180
    while "pdp serving on" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    server = Server(name, proc, log, opa_pid=-1)
    server.pids()  # finds the OPA child
    return server


def _per_decision(sampler: Sampler, rate: float) -> dict[str, Any]:
    return {n: round(cpu * 1e4 / rate) if rate else None for n, cpu in sampler.cpu.items() if n != "loadgen"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--before", type=Path, help="another checkout to measure alongside")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pdp-bench-sidecar-"))
    shutil.copytree(ROOT / "examples", work / "examples")
    data = {"intent": {k: INTENT[k] for k in ("tenant", "usage", "deploy_model")}}
    body = json.dumps({"input": INTENT}).encode()
    servers: dict[str, tuple[Server, str, str]] = {}
    try:
        fronts = [("after", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
        for name, cwd in fronts:
            grpc_addr, opa_port = f"127.0.0.1:{free_port()}", free_port()
            server = serve(name, cwd, work, grpc_addr, f"127.0.0.1:{opa_port}")
            servers[name] = (
                server,
                grpc_addr,
                f"http://127.0.0.1:{opa_port}/v1/data/gpupaas/decision/result",
            )
        print(f"bench sidecar: {work}; load average {os.getloadavg()}", flush=True)
        for round_ in range(args.rounds):
            for name, (server, grpc_addr, opa_url) in servers.items():
                ghz(grpc_addr, DECIDE, data, rps=None, duration=1)  # warm
                with Sampler(server.pids()) as bare_cpu:
                    bare = vegeta(opa_url, body, rate=None, duration=args.duration)
                with Sampler(server.pids()) as pdp_cpu:
                    via = ghz(grpc_addr, DECIDE, data, rps=None, duration=args.duration)
                a, b = bare["throughput"], via["throughput"]
                print(
                    f"  round {round_ + 1} {name:6} bare OPA {a:7.0f}/s (us CPU per decision "
                    f"{_per_decision(bare_cpu, a)}, errors {bare.get('errors')})   Decide via sidecar "
                    f"{b:7.0f}/s ({_per_decision(pdp_cpu, b)}, errors {via['errors']})   "
                    f"ratio {b / a:.2f}   load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        print(f"load average after: {os.getloadavg()}", flush=True)
    finally:
        for server, _, _ in servers.values():
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Latency of the scheduler extender's `/filter` over HTTP at a fixed rate, against `pdp serve`
(real OPA sidecar), with the bench's ExtenderArgs: what kube-scheduler waits for per cycle.

A paced keep-alive client (one request every 1/rate s, sent on time unless the previous answer is
late, which then counts against the late answer's successor too) instead of vegeta, so it runs
without `scripts/bench`'s load generators. `--engine wasm` decides in-process instead of on the OPA
sidecar. `--tree DIR` serves from another checkout (before/after comparisons in one run: `git
worktree`/`git archive` the old commit into DIR).

    .venv/bin/python -m bench.extender_http --nodes 5000 --rate 5 --duration 60
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.inputs import extender_args

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(tree: Path, work: Path, engine: str = "sidecar") -> tuple[subprocess.Popen[bytes], int]:
    shutil.copytree(ROOT / "examples", work / "examples", dirs_exist_ok=True)
    port, grpc, opa = free_port(), free_port(), free_port()
    argv = [sys.executable, "-m", "pdp.cli", "serve"]
    argv += [
        "--tenants",
        str(work / "examples" / "tenants"),
        "--fleet",
        str(work / "examples" / "fleet.yaml"),
    ]
    argv += ["--keys", str(work / "keys"), "--bundles", str(work / "bundles"), "--state", str(work / "state")]
    argv += ["--listen", f"127.0.0.1:{grpc}"]
    argv += ["--engine", "wasm"] if engine == "wasm" else ["--sidecar-addr", f"127.0.0.1:{opa}"]
    argv += ["--extender-listen", f"127.0.0.1:{port}"]
    log = work / "pdp.log"
    proc = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=tree)
    deadline = time.monotonic() + 120
    while b"pdp serving on" not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"pdp serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return proc, port


def paced(port: int, body: bytes, rate: float, duration: float) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    samples = []
    start = time.monotonic()
    for i in range(int(rate * duration)):
        due = start + i / rate
        time.sleep(max(0.0, due - time.monotonic()))
        conn.request("POST", "/filter", body, headers)
        response = conn.getresponse()
        answer = response.read()
        # Latency from when the request was due: a late predecessor delays it too (open loop).
        samples.append((time.monotonic() - due) * 1000)
        if response.status != 200 or orjson.loads(answer)["Error"]:
            raise RuntimeError(f"filter failed: {response.status} {answer[:300]!r}")
    conn.close()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose pdp serves")
    parser.add_argument("--engine", choices=["sidecar", "wasm"], default="sidecar")
    args = parser.parse_args()
    body = extender_args(args.nodes)
    with tempfile.TemporaryDirectory(prefix="extender-http-") as tmp:
        proc, port = serve(args.tree, Path(tmp), args.engine)
        try:
            paced(port, body, args.rate, min(args.duration, 4.0))  # warm-up
            samples = sorted(paced(port, body, args.rate, args.duration))
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    out: dict[str, Any] = {
        "tree": str(args.tree),
        "engine": args.engine,
        "load_average": os.getloadavg(),
        "requests": len(samples),
        "p50_ms": round(statistics.median(samples), 1),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 1),
        "max_ms": round(samples[-1], 1),
    }
    print(orjson.dumps(out).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

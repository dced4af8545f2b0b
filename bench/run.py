"""The benchmark harness: every decision path measured in one run on this machine, load
generators included, with ratios to the floors measured in the same run.

    scripts/bench            # or: .venv/bin/python -m bench.run [--quick]

Paths: (a) bare OPA REST, the floor of the sidecar paths; (b) the PDP's gRPC Decide through the
sidecar; (c) the admission webhook over HTTPS keep-alive; (d) the scheduler extender's filter with
100, 1,000 and 5,000 nodes; (e) the in-process wasm engine (evaluation alone, unary and batched
Decide); (f) a no-op Decide handler on the same gRPC front, the floor of the Python gRPC layer.
Load: ghz (gRPC) and vegeta (HTTP), both open-loop at fixed rates on keep-alive connections, and
closed-loop at saturation. Results: bench/results/latest.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".bin"
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROTO = ROOT / "proto"
DECIDE = "gpupaas.pdp.v1.DecisionService.Decide"
DECIDE_BATCH = "gpupaas.pdp.v1.DecisionService.DecideBatch"
INTENT = json.loads((ROOT / "examples" / "intents" / "01-acme-eu-deploy-eu.json").read_text())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
            out["opa"] = self.opa_pid
        # the extra processes of `--workers N` / `--processes N`, which share the gRPC port
        workers = [c for c in children(self.proc.pid) if b"python" in Path(f"/proc/{c}/cmdline").read_bytes()]
        for i, pid in enumerate(sorted(workers), start=2):
            out[f"{self.name}-{i}"] = pid
        return out

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_server(name: str, argv: list[str], ready_text: str, workdir: Path, timeout: float = 120) -> Server:
    log = workdir / f"{name}.log"
    proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while ready_text not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    opa = next((c for c in children(proc.pid) if "opa" in Path(f"/proc/{c}/comm").read_text()), None)
    return Server(name, proc, log, opa)


class Sampler:
    """CPU and peak memory of the given processes over one measurement."""

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
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        elapsed = time.monotonic() - self.t0
        gen = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = {
            n: round(100 * (cpu_seconds(p) - self.cpu0[n]) / elapsed, 1) for n, p in self.pids.items()
        }
        gen_cpu = (gen.ru_utime + gen.ru_stime) - (self.gen0.ru_utime + self.gen0.ru_stime)
        self.cpu["loadgen"] = round(100 * gen_cpu / elapsed, 1)
        for name, pid in self.pids.items():
            self.peak[name] = round(max(self.peak[name], rss_mib(pid)), 1)


# -- load generators ---------------------------------------------------------------------------


def ghz(
    addr: str,
    call: str,
    data: Any,
    *,
    rps: int | None,
    duration: float,
    concurrency: int = 32,
    connections: int = 1,
) -> dict[str, Any]:
    """ghz over `connections` keep-alive connections (several, so that SO_REUSEPORT spreads them
    over the processes of a multi-process server)."""
    argv = [
        str(BIN / "ghz"),
        "--insecure",
        "--proto",
        str(PROTO / "gpupaas/pdp/v1/pdp.proto"),
        "--import-paths",
        str(PROTO),
        "--call",
        call,
        "-d",
        json.dumps(data),
        "-z",
        f"{duration}s",
        "-c",
        str(concurrency),
        "--connections",
        str(connections),
        "-O",
        "json",
        "--timeout",
        "5s",
    ]
    if rps:
        argv += ["--rps", str(rps)]
    out = json.loads(subprocess.run([*argv, addr], capture_output=True, text=True, check=True).stdout)
    lat = {d["percentage"]: d["latency"] / 1e6 for d in out.get("latencyDistribution") or []}
    # ghz -z closes the connection at the deadline under requests still in flight; those are cut
    # off by the load generator, not failed by the server, and are reported apart.
    distribution = out.get("errorDistribution") or {}
    cut = sum(n for msg, n in distribution.items() if "closed network connection" in msg or "Canceled" in msg)
    errors = sum(distribution.values()) - cut
    return {
        "p50_ms": lat.get(50),
        "p95_ms": lat.get(95),
        "p99_ms": lat.get(99),
        "throughput": round(out["rps"], 1),
        "requests": out["count"],
        "errors": errors,
        "cut_at_end": cut,
    }


def vegeta(
    url: str,
    body: bytes,
    *,
    rate: int | None,
    duration: float,
    workers: int = 16,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        body_file = Path(tmp) / "body"
        body_file.write_bytes(body)
        header_lines = "".join(
            f"{k}: {v}\n" for k, v in {"Content-Type": "application/json", **(headers or {})}.items()
        )
        (Path(tmp) / "targets").write_text(f"POST {url}\n{header_lines}@{body_file}\n")
        attack = [
            str(BIN / "vegeta"),
            "attack",
            f"-targets={Path(tmp) / 'targets'}",
            f"-duration={duration}s",
            "-insecure",
            "-keepalive=true",
            "-timeout=10s",
        ]
        attack += [f"-rate={rate}/1s"] if rate else ["-rate=0", f"-max-workers={workers}"]
        results = subprocess.run(attack, capture_output=True, check=True).stdout
        report = subprocess.run(
            [str(BIN / "vegeta"), "report", "-type=json"], input=results, capture_output=True, check=True
        ).stdout
    doc = json.loads(report)
    lat = doc["latencies"]
    ok = sum(v for k, v in (doc.get("status_codes") or {}).items() if k == "200")
    return {
        "p50_ms": lat["50th"] / 1e6,
        "p95_ms": lat["95th"] / 1e6,
        "p99_ms": lat["99th"] / 1e6,
        "throughput": round(doc["throughput"], 1),
        "requests": doc["requests"],
        "errors": doc["requests"] - ok,
    }


# -- inputs ------------------------------------------------------------------------------------


def admission_review() -> bytes:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "llama-0", "namespace": "acme-prod"},
        "spec": {
            "containers": [{"name": "m", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
            "tolerations": [
                {
                    "key": "gpupaas.io/dedicated",
                    "operator": "Equal",
                    "value": "acme-eu",
                    "effect": "NoSchedule",
                }
            ],
        },
    }
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "bench",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "acme-prod",
            "name": "llama-0",
            "operation": "CREATE",
            "userInfo": {"username": "bench"},
            "object": pod,
        },
    }
    return json.dumps(review).encode()


def extender_args(nodes: int) -> bytes:
    pod = {
        "metadata": {"name": "p", "namespace": "acme-prod", "uid": "u1"},
        "spec": {"containers": [{"name": "m", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }
    items = []
    for i in range(nodes):
        eu = i % 2 == 0
        labels = {
            "topology.kubernetes.io/region": "eu-west-1" if eu else "us-east-1",
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
            "nvidia.com/gpu.sharing-strategy": "none",
            "gpupaas.io/pool": "acme-h100-dedicated" if i % 4 == 0 else "eu-h100-shared",
        }
        if i % 4 == 0:
            labels["gpupaas.io/dedicated-tenant"] = "acme-eu"
        items.append({"metadata": {"name": f"node-{i}", "labels": labels}})
    return json.dumps({"Pod": pod, "Nodes": {"items": items}}).encode()


def synthetic_config(
    directory: Path, tenants: int = 1000, clusters: int = 50, pools: int = 25, nodes: int = 8
) -> None:
    """1,000 tenants and a fleet of clusters x pools x nodes (10,000 nodes by default)."""
    fleet = yaml.safe_load((ROOT / "examples" / "fleet.yaml").read_text())
    classes = fleet["fleet"]["gpu_classes"]
    fleet["fleet"]["clusters"] = {
        f"c{c}": {
            "region": f"{'eu' if c % 2 else 'us'}-r{c}",
            "jurisdiction": "EU" if c % 2 else "US",
            "pools": {
                f"c{c}-p{p}": {
                    "gpu_class": ["H100-80GB", "A100-40GB", "MI300X"][p % 3],
                    "isolation": "shared",
                    "sharing_strategy": "none",
                    "nodes": nodes,
                    "gpus_per_node": 8,
                }
                for p in range(pools)
            },
        }
        for c in range(clusters)
    }
    fleet["fleet"]["gpu_classes"] = classes
    (directory / "tenants").mkdir(parents=True)
    (directory / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    for t in range(tenants):
        doc = {
            "tenant": {
                "name": f"t{t}",
                "tier": ["enterprise", "standard", "spot"][t % 3],
                "isolation": "shared",
                "data_residency": ["eu-only", "us-only", "any"][t % 3],
                "allow_preemption": t % 3 == 2,
                "allow_gpu_sharing": t % 2 == 0,
                "namespaces": [f"t{t}-a", f"t{t}-b"],
                "entitlements": {"H100-80GB": 8, "A100-40GB": 4},
            }
        }
        (directory / "tenants" / f"t{t}.yaml").write_text(yaml.safe_dump(doc))


# -- scenarios ---------------------------------------------------------------------------------


@dataclass
class Results:
    rows: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(
        self, path: str, load: str, stats: dict[str, Any], sampler: Sampler, floor: str | None = None
    ) -> None:
        row = {"path": path, "load": load, **stats, "cpu_pct": sampler.cpu, "peak_rss_mib": sampler.peak}
        if floor:
            row["floor"] = floor
        self.rows.append(row)
        print(
            f"  {path:34} {load:14} p50 {fmt(stats['p50_ms'])} p99 {fmt(stats['p99_ms'])} "
            f"{stats['throughput']:>8}/s errors {stats['errors']}",
            flush=True,
        )


def fmt(ms: float | None) -> str:
    return f"{ms:8.2f} ms" if ms is not None else "       - ms"


def measure(
    results: Results, path: str, load: str, pids: dict[str, int], run: Any, floor: str | None = None
) -> dict[str, Any]:
    with Sampler(pids) as sampler:
        stats = run()
    results.add(path, load, stats, sampler, floor)
    return stats


def eval_alone(stack_dir: Path, opa_addr: str, n: int) -> dict[str, float]:
    """Evaluation alone, sequential: the wasm engine in-process vs the sidecar round trip."""
    from pdp.engine.opa_http import OpaHttpEngine
    from pdp.engine.wasm import WasmEngine

    wasm = WasmEngine.from_tarball(stack_dir / "bundles-wasm" / "gpupaas.wasm.tar.gz", instances=1)
    sidecar = OpaHttpEngine(opa_addr)
    out = {}
    for name, engine in (("wasm", wasm), ("sidecar", sidecar)):
        for _ in range(200):
            engine.evaluate("gpupaas/decision/result", INTENT, timeout=2)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            engine.evaluate("gpupaas/decision/result", INTENT, timeout=2)
            samples.append((time.perf_counter() - t0) * 1000)
        samples.sort()
        out[f"{name}_p50_ms"] = round(statistics.median(samples), 4)
        out[f"{name}_p99_ms"] = round(samples[int(len(samples) * 0.99)], 4)
    out["speedup_p50"] = round(out["sidecar_p50_ms"] / out["wasm_p50_ms"], 2)
    wasm.close()
    sidecar.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--quick", action="store_true", help="2 s measurements, no scale test")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    d = 2.0 if args.quick else args.duration
    for tool in ("ghz", "vegeta", "opa"):
        if not (BIN / tool).exists():
            raise SystemExit(f"{BIN / tool} missing: run scripts/bench (it builds the load generators)")

    work = Path(tempfile.mkdtemp(prefix="pdp-bench-"))
    shutil.copytree(ROOT / "examples", work / "examples")
    from pdp.enforcement.certs import issue_server_cert, make_ca

    ca = make_ca(work / "pki")
    tls = issue_server_cert(ca, work / "pki" / "serving", ["127.0.0.1"])
    results = Results()
    results.extra["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    servers: list[Server] = []
    try:
        ports = {
            k: free_port()
            for k in (
                *("opa", "grpc", "webhook", "extender", "wasm", "noop"),
                *("grpc2", "wasm2", "noop2", "webhook_wasm"),
            )
        }
        common = [
            "--tenants",
            str(work / "examples" / "tenants"),
            "--fleet",
            str(work / "examples" / "fleet.yaml"),
            "--keys",
            str(work / "keys"),
        ]
        pdp = start_server(
            "pdp",
            [
                PY,
                "-m",
                "pdp.cli",
                "serve",
                *common,
                "--bundles",
                str(work / "bundles"),
                "--state",
                str(work / "state-opa"),
                "--listen",
                f"127.0.0.1:{ports['grpc']}",
                "--sidecar-addr",
                f"127.0.0.1:{ports['opa']}",
                "--webhook-listen",
                f"127.0.0.1:{ports['webhook']}",
                "--webhook-cert",
                str(tls.cert),
                "--webhook-key",
                str(tls.key),
                "--extender-listen",
                f"127.0.0.1:{ports['extender']}",
            ],
            "pdp serving on",
            work,
        )
        servers.append(pdp)
        wasm = start_server(
            "pdp-wasm",
            [
                PY,
                "-m",
                "pdp.cli",
                "serve",
                *common,
                "--engine",
                "wasm",
                "--bundles",
                str(work / "bundles-wasm"),
                "--state",
                str(work / "state-wasm"),
                "--listen",
                f"127.0.0.1:{ports['wasm']}",
                "--webhook-listen",
                f"127.0.0.1:{ports['webhook_wasm']}",
                "--webhook-cert",
                str(tls.cert),
                "--webhook-key",
                str(tls.key),
            ],
            "pdp serving on",
            work,
        )
        servers.append(wasm)
        noop = start_server(
            "noop",
            [PY, "-m", "bench.noop_server", "--listen", f"127.0.0.1:{ports['noop']}"],
            "noop serving",
            work,
        )
        servers.append(noop)
        # The same three, as two processes on one port each (`pdp serve --workers 2`).
        pdp2 = start_server(
            "pdp-2proc",
            [
                PY,
                "-m",
                "pdp.cli",
                "serve",
                *common,
                "--workers",
                "2",
                "--bundles",
                str(work / "bundles-2proc"),
                "--state",
                str(work / "state-2proc"),
                "--listen",
                f"127.0.0.1:{ports['grpc2']}",
            ],
            "pdp serving on",
            work,
        )
        servers.append(pdp2)
        wasm2 = start_server(
            "pdp-wasm-2proc",
            [
                PY,
                "-m",
                "pdp.cli",
                "serve",
                *common,
                "--engine",
                "wasm",
                "--workers",
                "2",
                "--bundles",
                str(work / "bundles-wasm-2proc"),
                "--state",
                str(work / "state-wasm-2proc"),
                "--listen",
                f"127.0.0.1:{ports['wasm2']}",
            ],
            "pdp serving on",
            work,
        )
        servers.append(wasm2)
        noop2 = start_server(
            "noop-2proc",
            [PY, "-m", "bench.noop_server", "--processes", "2", "--listen", f"127.0.0.1:{ports['noop2']}"],
            "noop serving",
            work,
        )
        servers.append(noop2)
        grpc_addr, wasm_addr, noop_addr = (f"127.0.0.1:{ports[k]}" for k in ("grpc", "wasm", "noop"))
        grpc2_addr, wasm2_addr, noop2_addr = (f"127.0.0.1:{ports[k]}" for k in ("grpc2", "wasm2", "noop2"))
        opa_url = f"http://127.0.0.1:{ports['opa']}/v1/data/gpupaas/decision/result"
        opa_body = json.dumps({"input": INTENT}).encode()
        data = {
            "intent": {
                "tenant": INTENT["tenant"],
                "usage": INTENT["usage"],
                "deploy_model": INTENT["deploy_model"],
            }
        }
        print(f"bench: {work}; {d:.0f} s per measurement", flush=True)

        print("(a) bare OPA, (b) PDP Decide via sidecar, (f) no-op Decide", flush=True)
        for rate in (1000, 2000):
            measure(
                results,
                "a bare OPA",
                f"{rate}/s",
                pdp.pids(),
                lambda r=rate: vegeta(opa_url, opa_body, rate=r, duration=d),
            )
            measure(
                results,
                "b PDP Decide (sidecar)",
                f"{rate}/s",
                pdp.pids(),
                lambda r=rate: ghz(grpc_addr, DECIDE, data, rps=r, duration=d),
                floor="a",
            )
            measure(
                results,
                "f no-op Decide",
                f"{rate}/s",
                noop.pids(),
                lambda r=rate: ghz(noop_addr, DECIDE, data, rps=r, duration=d),
            )
        measure(
            results,
            "a bare OPA",
            "saturation",
            pdp.pids(),
            lambda: vegeta(opa_url, opa_body, rate=None, duration=d),
        )
        measure(
            results,
            "b PDP Decide (sidecar)",
            "saturation",
            pdp.pids(),
            lambda: ghz(grpc_addr, DECIDE, data, rps=None, duration=d),
            floor="a",
        )
        measure(
            results,
            "f no-op Decide",
            "saturation",
            noop.pids(),
            lambda: ghz(noop_addr, DECIDE, data, rps=None, duration=d),
        )

        print("(c) admission webhook", flush=True)
        review = admission_review()
        hook = f"https://127.0.0.1:{ports['webhook']}/validate?timeout=10s"
        measure(
            results,
            "c webhook",
            "500/s",
            pdp.pids(),
            lambda: vegeta(hook, review, rate=500, duration=d),
            floor="a",
        )
        measure(
            results,
            "c webhook",
            "saturation",
            pdp.pids(),
            lambda: vegeta(hook, review, rate=None, duration=d),
            floor="a",
        )

        hook_wasm = f"https://127.0.0.1:{ports['webhook_wasm']}/validate?timeout=10s"
        for load, rate in (("500/s", 500), ("saturation", None)):
            measure(
                results,
                "c webhook (wasm engine)",
                load,
                wasm.pids(),
                lambda r=rate: vegeta(hook_wasm, review, rate=r, duration=d),
                floor="a",
            )

        print("(d) scheduler extender filter", flush=True)
        url = f"http://127.0.0.1:{ports['extender']}/filter"
        for n in (100, 1000, 5000):
            args_body = extender_args(n)
            measure(
                results,
                f"d extender filter {n} nodes",
                "5/s",
                pdp.pids(),
                lambda b=args_body: vegeta(url, b, rate=5, duration=max(d, 4)),
                floor="a",
            )
            measure(
                results,
                f"d extender filter {n} nodes",
                "saturation",
                pdp.pids(),
                lambda b=args_body: vegeta(url, b, rate=None, duration=max(d, 4), workers=2),
                floor="a",
            )

        print("(e) in-process wasm engine", flush=True)
        results.extra["eval_alone"] = eval_alone(
            work, f"127.0.0.1:{ports['opa']}", 3000 if not args.quick else 1000
        )
        print(f"  eval alone: {results.extra['eval_alone']}", flush=True)
        for rate in (1000, 2000):
            measure(
                results,
                "e PDP Decide (wasm)",
                f"{rate}/s",
                wasm.pids(),
                lambda r=rate: ghz(wasm_addr, DECIDE, data, rps=r, duration=d),
                floor="f",
            )
        measure(
            results,
            "e PDP Decide (wasm)",
            "saturation",
            wasm.pids(),
            lambda: ghz(wasm_addr, DECIDE, data, rps=None, duration=d),
            floor="f",
        )
        batch = {"intents": [data["intent"]] * 100}
        stats = measure(
            results,
            "e DecideBatch x100 (wasm)",
            "saturation",
            wasm.pids(),
            lambda: ghz(wasm_addr, DECIDE_BATCH, batch, rps=None, duration=d, concurrency=4),
        )
        results.extra["batched_decisions_per_s"] = round(stats["throughput"] * 100)
        stats = measure(
            results,
            "b DecideBatch x100 (sidecar)",
            "saturation",
            pdp.pids(),
            lambda: ghz(grpc_addr, DECIDE_BATCH, batch, rps=None, duration=d, concurrency=4),
        )
        results.extra["batched_decisions_per_s_sidecar"] = round(stats["throughput"] * 100)

        print("(g) two processes on one port (--workers 2), ghz over 16 connections", flush=True)
        for rate in (1000, 2000):
            measure(
                results,
                "b PDP Decide (sidecar), 2 processes",
                f"{rate}/s",
                pdp2.pids(),
                lambda r=rate: ghz(grpc2_addr, DECIDE, data, rps=r, duration=d, connections=16),
                floor="a",
            )
            measure(
                results,
                "e PDP Decide (wasm), 2 processes",
                f"{rate}/s",
                wasm2.pids(),
                lambda r=rate: ghz(wasm2_addr, DECIDE, data, rps=r, duration=d, connections=16),
                floor="f2",
            )
        for name, server, addr, floor in (
            ("b PDP Decide (sidecar), 2 processes", pdp2, grpc2_addr, "a"),
            ("e PDP Decide (wasm), 2 processes", wasm2, wasm2_addr, "f2"),
            ("f2 no-op Decide, 2 processes", noop2, noop2_addr, None),
        ):
            measure(
                results,
                name,
                "saturation",
                server.pids(),
                lambda a=addr: ghz(a, DECIDE, data, rps=None, duration=d, connections=16),
                floor=floor,
            )
        stats = measure(
            results,
            "e DecideBatch x100 (wasm), 2 processes",
            "saturation",
            wasm2.pids(),
            lambda: ghz(wasm2_addr, DECIDE_BATCH, batch, rps=None, duration=d, concurrency=8, connections=8),
        )
        results.extra["batched_decisions_per_s_2proc"] = round(stats["throughput"] * 100)

        print("revision swap under load", flush=True)
        results.extra["revision_swap"] = revision_swap(work, grpc_addr, data, pdp)
        print(f"  {results.extra['revision_swap']}", flush=True)

        if not args.quick:
            print("scale: 1,000 tenants, 10,000 nodes", flush=True)
            results.extra["scale"] = scale_test(work, data, results, pdp.pids())
            print(f"  {results.extra['scale']}", flush=True)
    finally:
        for server in servers:
            server.stop()

    summarize(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": results.rows, **results.extra}, indent=1))
    print(f"\nresults: {args.out}")
    return 0


def revision_swap(work: Path, grpc_addr: str, data: Any, pdp: Server) -> dict[str, Any]:
    """A new bundle revision activated while 1,000 decisions/s run: zero failed decisions, and no
    batch mixing two revisions."""
    from pdp.client import PdpClient

    seen: set[str] = set()
    mixed = 0
    batches = 0
    stop = threading.Event()

    def batches_loop() -> None:
        nonlocal mixed, batches
        intent = {"kind": "deploy_model", **data["intent"]}
        with PdpClient(grpc_addr) as client:
            while not stop.is_set():
                revisions = {d["bundle_revision"] for d in client.decide_batch([intent] * 20)}
                batches += 1
                mixed += len(revisions) > 1
                seen.update(revisions)

    thread = threading.Thread(target=batches_loop, daemon=True)
    thread.start()
    out: dict[str, Any] = {}

    def rebuild() -> None:
        time.sleep(1.5)
        tenant = work / "examples" / "tenants" / "globex.yaml"
        doc = yaml.safe_load(tenant.read_text())
        doc["tenant"]["entitlements"]["H100-80GB"] += 1
        tenant.write_text(yaml.safe_dump(doc))
        subprocess.run(
            [
                PY,
                "-m",
                "pdp.cli",
                "build",
                "--tenants",
                str(work / "examples" / "tenants"),
                "--fleet",
                str(work / "examples" / "fleet.yaml"),
                "--keys",
                str(work / "keys"),
                "--bundles",
                str(work / "bundles"),
            ],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )

    builder = threading.Thread(target=rebuild)
    builder.start()
    # Long enough for `pdp build` under this load plus OPA's bundle polling (8 s once saw no swap).
    stats = ghz(grpc_addr, DECIDE, data, rps=1000, duration=15)
    builder.join()
    stop.set()
    thread.join()
    if len(seen) < 2:
        print("  warning: the new revision was not activated during the run", flush=True)
    out.update(
        {
            "decisions": stats["requests"],
            "failed": stats["errors"],
            "p99_ms": stats["p99_ms"],
            "revisions_seen": len(seen),
            "batches": batches,
            "mixed_batches": mixed,
        }
    )
    return out


def scale_test(work: Path, data: Any, results: Results, baseline_pids: dict[str, int]) -> dict[str, Any]:
    big = work / "scale"
    synthetic_config(big)
    port = free_port()
    server = start_server(
        "pdp-scale",
        [
            PY,
            "-m",
            "pdp.cli",
            "serve",
            "--tenants",
            str(big / "tenants"),
            "--fleet",
            str(big / "fleet.yaml"),
            "--keys",
            str(work / "keys"),
            "--bundles",
            str(big / "bundles"),
            "--state",
            str(big / "state"),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        "pdp serving on",
        work,
        timeout=300,
    )
    try:
        scaled = {
            "intent": {
                **data["intent"],
                "tenant": "t0",
                "deploy_model": {**data["intent"]["deploy_model"], "gpu_class": "H100-80GB"},
            }
        }
        big_stats = measure(
            results,
            "b PDP Decide, 1k tenants/10k nodes",
            "1000/s",
            server.pids(),
            lambda: ghz(f"127.0.0.1:{port}", DECIDE, scaled, rps=1000, duration=5),
        )
        pids = server.pids()
        return {
            "pdp_rss_mib": round(rss_mib(pids["pdp-scale"]), 1),
            "opa_rss_mib": round(rss_mib(pids["opa"]), 1) if "opa" in pids else None,
            "p50_ms": big_stats["p50_ms"],
            "p99_ms": big_stats["p99_ms"],
        }
    finally:
        server.stop()


def summarize(results: Results) -> None:
    """Print the table; each row gets its p50 and throughput as ratios to its floor's in this run
    (the floor at the same offered load, else at saturation)."""
    floors: dict[tuple[str, str], dict[str, Any]] = {}
    for row in results.rows:
        if row["path"].startswith(("a bare OPA", "f no-op", "f2 no-op")):
            floors[(row["path"].split()[0], row["load"])] = row
    print(
        f"\n{'path':40} {'load':11} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} "
        f"{'thru/s':>8} {'err':>4}  p50 vs floor, floor thru / thru"
    )
    for row in results.rows:
        name = row.get("floor", "")
        floor = floors.get((name, row["load"])) or floors.get((name, "saturation"))
        ratio = ""
        row["ratio_p50"] = row["ratio_throughput"] = None
        if floor and name:
            row["ratio_p50"] = round(row["p50_ms"] / floor["p50_ms"], 2)
            ratio = f"{row['ratio_p50']:.2f}x {name}"
            if row["load"] == "saturation" and row["throughput"]:
                row["ratio_throughput"] = round(floor["throughput"] / row["throughput"], 2)
                ratio += f", {row['ratio_throughput']:.2f}x"
        print(
            f"{row['path']:40} {row['load']:11} {row['p50_ms']:8.2f} {row['p95_ms']:8.2f} "
            f"{row['p99_ms']:8.2f} {row['throughput']:8.0f} {row['errors']:4}  {ratio}"
        )


if __name__ == "__main__":
    raise SystemExit(main())

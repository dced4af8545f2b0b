"""The benchmark harness: every decision path measured in one run on this machine, load
generators included, with ratios to the floors measured in the same run.

    scripts/bench            # or: .venv/bin/python -m bench.run [--quick]

Paths: (a) bare OPA REST, the floor of the sidecar paths; (b) the PDP's gRPC Decide through the
sidecar; (c) the admission webhook over HTTPS keep-alive, against (g) its peer OPA Gatekeeper
(bench/peer.py); (d) the scheduler extender's filter with
100, 1,000 and 5,000 nodes; (e) the in-process wasm engine (evaluation alone, unary and batched
Decide); (f) a no-op Decide handler on the same gRPC front, the floor of the Python gRPC layer.
Load: ghz (gRPC) and vegeta (HTTP), both open-loop at fixed rates on keep-alive connections, and
closed-loop at saturation. Results: bench/results/latest.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from bench import peer
from bench.extender_http import cluster_of, names_body, wait_for_view
from bench.harness import BIN, PY, ROOT, Results, Server, measure, rss_mib, start_server
from bench.inputs import INTENT, admission_review, extender_args, synthetic_config
from bench.load import DECIDE, DECIDE_BATCH, ghz, vegeta
from bench.report import summarize
from tests.ports import free_port


def pdp_serve(common: list[str], work: Path, name: str, listen: str) -> list[str]:
    """`pdp serve` on the bench's tenants, fleet and keys, with its own bundles and state."""
    argv = [PY, "-m", "pdp.cli", "serve", *common]
    return [
        *argv,
        "--bundles",
        str(work / f"bundles-{name}"),
        "--state",
        str(work / f"state-{name}"),
        "--listen",
        listen,
    ]


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
    from pdp.net.certs import issue_server_cert, make_ca

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
        examples = work / "examples"
        common = ["--tenants", str(examples / "tenants"), "--fleet", str(examples / "fleet.yaml")]
        common += ["--keys", str(work / "keys")]
        pdp = start_server(
            "pdp",
            [
                *pdp_serve(common, work, "opa", f"127.0.0.1:{ports['grpc']}"),
                *("--sidecar-addr", f"127.0.0.1:{ports['opa']}"),
                *("--webhook-listen", f"127.0.0.1:{ports['webhook']}"),
                *("--webhook-cert", str(tls.cert), "--webhook-key", str(tls.key)),
                *("--extender-listen", f"127.0.0.1:{ports['extender']}"),
            ],
            "pdp serving on",
            work,
        )
        servers.append(pdp)
        wasm = start_server(
            "pdp-wasm",
            [
                *pdp_serve(common, work, "wasm", f"127.0.0.1:{ports['wasm']}"),
                *("--engine", "wasm", "--webhook-listen", f"127.0.0.1:{ports['webhook_wasm']}"),
                *("--webhook-cert", str(tls.cert), "--webhook-key", str(tls.key)),
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
            [*pdp_serve(common, work, "2proc", f"127.0.0.1:{ports['grpc2']}"), "--workers", "2"],
            "pdp serving on",
            work,
        )
        servers.append(pdp2)
        wasm2 = start_server(
            "pdp-wasm-2proc",
            [
                *pdp_serve(common, work, "wasm-2proc", f"127.0.0.1:{ports['wasm2']}"),
                *("--engine", "wasm", "--workers", "2"),
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

        print("(c) admission webhook against its peer, Gatekeeper, same body and loads", flush=True)
        review = admission_review()
        peer.gatekeeper(results, work, review, d)
        hook = f"https://127.0.0.1:{ports['webhook']}/validate?timeout=10s"
        peer.drive(results, "c webhook (sidecar)", hook, pdp.pids, review, d)
        hook_wasm = f"https://127.0.0.1:{ports['webhook_wasm']}/validate?timeout=10s"
        peer.drive(results, "c webhook (wasm)", hook_wasm, wasm.pids, review, d)
        # a port taken now: the peer's control plane took ports of its own since the others were chosen
        hook2_port = free_port()
        wasm_hooks = start_server(
            "pdp-wasm-hook2",
            [
                *pdp_serve(common, work, "wasm-hook2", f"127.0.0.1:{free_port()}"),
                "--engine",
                "wasm",
                *("--webhook-listen", f"127.0.0.1:{hook2_port}"),
                *("--webhook-cert", str(tls.cert), "--webhook-key", str(tls.key), "--webhook-workers", "2"),
            ],
            "pdp serving on",
            work,
        )
        servers.append(wasm_hooks)
        hook_wasm2 = f"https://127.0.0.1:{hook2_port}/validate?timeout=10s"
        peer.drive(results, "c webhook (wasm, 2 processes)", hook_wasm2, wasm_hooks.pids, review, d)
        wasm_hooks.stop()
        servers.remove(wasm_hooks)
        results.extra["webhook_targets"] = peer.targets(results)

        print("(d) scheduler extender filter", flush=True)
        url = f"http://127.0.0.1:{ports['extender']}/filter"
        # Real nodes each carry labels of their own (hostname, instance id, feature discovery's
        # timestamp: bench.inputs.real_node_labels), which a labels-keyed cache cannot group.
        for n, real in ((100, False), (1000, False), (5000, False), (5000, True)):
            args_body = extender_args(n, real_labels=real)
            scenario = f"d extender filter {n} nodes" + (" (real labels)" if real else "")
            measure(
                results,
                scenario,
                "5/s",
                pdp.pids(),
                lambda b=args_body: vegeta(url, b, rate=5, duration=max(d, 4)),
                floor="a",
            )
            measure(
                results,
                scenario,
                "saturation",
                pdp.pids(),
                lambda b=args_body: vegeta(url, b, rate=None, duration=max(d, 4), workers=2),
                floor="a",
            )

        # As the chart and manifests ship it (nodeCacheCapable: true): the nodes live in a real
        # kube-apiserver, `pdp serve --kubeconfig` watches them, the scheduler names candidates.
        nodes_body = extender_args(5000, real_labels=True)
        with cluster_of(nodes_body, work / "extender-cluster") as kubeconfig:
            port = free_port()
            named = start_server(
                "pdp-extender-named",
                [
                    *pdp_serve(common, work, "named", f"127.0.0.1:{free_port()}"),
                    *("--sidecar-addr", f"127.0.0.1:{free_port()}"),
                    *("--extender-listen", f"127.0.0.1:{port}", "--kubeconfig", str(kubeconfig)),
                ],
                "pdp serving on",
                work,
            )
            servers.append(named)
            named_url, names = f"http://127.0.0.1:{port}/filter", names_body(nodes_body)
            passed = wait_for_view(named_url, nodes_body)
            print(f"  names' view complete: {passed} of 5000 nodes pass, as with whole nodes", flush=True)
            scenario = "d extender filter 5000 nodes (real labels, names: as shipped)"
            loads: list[tuple[str, int | None, int]] = [("5/s", 5, 16), ("saturation", None, 2)]
            for load, named_rate, workers in loads:
                measure(
                    results,
                    scenario,
                    load,
                    named.pids(),
                    lambda r=named_rate, w=workers: vegeta(
                        named_url, names, rate=r, duration=max(d, 4), workers=w
                    ),
                    floor="a",
                )
            named.stop()
            servers.remove(named)

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
    from pdp.api.client import PdpClient

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
                str(work / "bundles-opa"),
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


if __name__ == "__main__":
    raise SystemExit(main())

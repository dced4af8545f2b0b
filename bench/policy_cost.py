"""Policy cost: OPA's own evaluation time per decision kind, on the example fleet and on a
generated 1,000-tenant / 10,000-node fleet, plus the same decisions on the in-process wasm engine.

    .venv/bin/python -m bench.policy_cost [-n 300] [--no-scale] [--no-wasm] [--policies DIR]

`--policies` measures another revision of the policies against the same data, e.g. before a change:
`git archive <commit> policies | tar -x -C /tmp/before` then `--policies /tmp/before/policies`.

Each fleet is built into a real bundle (pdp.bundles.build, the index included) and served by the
pinned OPA as the sidecar runs it (`opa run --server --optimize-store-for-read-speed`, GOGC); every
decision is POSTed to /v1/data/gpupaas/decision/result?metrics=true over one keep-alive
connection (as the PDP's engine calls it) and the figure is OPA's
`timer_rego_query_eval_ns` (evaluation alone: no HTTP, no JSON decoding of the input, no query
compilation). Wasm: wall time of WasmEngine.evaluate in this
process (input written into the module's memory, evaluation, result read back). Prints p50 and p90
per kind and fleet, in microseconds, and for OPA the number of expression evaluations of one
decision (`opa eval --profile` on the same bundle): a count, which a loaded machine cannot skew,
and OPA's CPU time per decision (its whole request: HTTP, JSON, evaluation), which waiting for a
core does not inflate as it does the evaluation's wall time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.harness import cpu_seconds
from bench.inputs import synthetic_config
from pdp.bundles.build import build_bundle
from pdp.config import load_config
from pdp.opa.binary import find_opa
from pdp.opa.sidecar import SidecarSettings
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ENTRYPOINT = "gpupaas/decision/result"


def _sample(area: str, name: str) -> dict[str, Any]:
    path = ROOT / "policies" / "gpupaas" / area / "samples" / f"{name}.json"
    return json.loads(path.read_text())[name]["input"]  # type: ignore[no-any-return]


def example_intents() -> dict[str, dict[str, Any]]:
    return {
        "deploy_model": json.loads((EXAMPLES / "intents" / "01-acme-eu-deploy-eu.json").read_text()),
        "deploy_model (deny)": json.loads((EXAMPLES / "intents" / "02-acme-eu-deploy-us.json").read_text()),
        "admit_workload": _sample("isolation", "own_toleration_ok"),
        "admit_workload (deny)": _sample("residency", "deny_us_region_affinity"),
    }


def scale_intents() -> dict[str, dict[str, Any]]:
    """t0 is an eu-only enterprise tenant of the generated fleet with namespaces t0-a, t0-b."""
    deploy = {"deployment": "d", "gpu_class": "H100-80GB", "gpus_per_replica": 2, "replicas": 2}
    pod = {"namespace": "t0-a", "name": "w", "kind": "Pod", "resources": {"nvidia.com/gpu": 1}}
    return {
        "deploy_model": {"kind": "deploy_model", "tenant": "t0", "usage": {}, "deploy_model": deploy},
        "deploy_model (deny)": {
            "kind": "deploy_model",
            "tenant": "t0",
            "usage": {},
            "deploy_model": {**deploy, "cluster": "c0"},  # c0 is a US cluster
        },
        "admit_workload": {"kind": "admit_workload", "usage": {}, "admit_workload": pod},
        "admit_workload (deny)": {
            "kind": "admit_workload",
            "usage": {},
            "admit_workload": {**pod, "node_selector": {"topology.kubernetes.io/region": "us-r0"}},
        },
    }


def build(
    tenants: Path, fleet: Path, out: Path, wasm: bool, policies: Path = ROOT / "policies"
) -> tuple[Path, Path | None]:
    config = load_config(tenants, fleet)
    built = build_bundle(config, policies=policies, out_dir=out, signing_key=None, wasm=wasm)
    return built.path, built.wasm_path


def _wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"opa exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/health?bundles", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"OPA at {base} not ready after {timeout} s")


def expression_evaluations(bundle: Path, intent: dict[str, Any]) -> int:
    argv = [str(find_opa()), "eval", "--bundle", str(bundle), "--stdin-input", "--profile"]
    argv += ["--profile-limit", "100000", "--format", "json", f"data.{ENTRYPOINT.replace('/', '.')}"]
    stdin = json.dumps(intent)
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True, timeout=300)
    return sum(int(p["num_eval"]) for p in json.loads(proc.stdout)["profile"])


def opa_eval_us(bundle: Path, intents: dict[str, dict[str, Any]], n: int) -> dict[str, dict[str, Any]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [str(find_opa()), "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error"]
    # as the sidecar runs it (pdp/opa/sidecar.py): data kept as AST values, its GC target
    argv += ["--optimize-store-for-read-speed", "--bundle", str(bundle)]
    env = {"GOGC": str(SidecarSettings.gogc), **os.environ}
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    # One keep-alive connection, as the PDP's engine calls its sidecar: a new connection per
    # request puts each evaluation on a new goroutine whose stack grows from 8 KiB inside OPA's
    # timer, ~1.7x the figure (bench/policy_server.py, docs/performance.md "Fifth pass").
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        _wait_ready(base, proc)
        out = {}

        def post(path: str, body: bytes) -> dict[str, Any]:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            return json.loads(conn.getresponse().read())  # type: ignore[no-any-return]

        for name, intent in intents.items():
            body = json.dumps({"input": intent}).encode()
            path = f"/v1/data/{ENTRYPOINT}?metrics=true"
            outcome = post(path, body)["result"]["outcome"]
            for _ in range(20):
                post(path, body)
            cpu0 = cpu_seconds(proc.pid)
            samples = sorted(post(path, body)["metrics"]["timer_rego_query_eval_ns"] / 1000 for _ in range(n))
            cpu_us = (cpu_seconds(proc.pid) - cpu0) * 1e6 / n
            out[name] = {"p50": statistics.median(samples), "p90": samples[int(n * 0.9)], "outcome": outcome}
            out[name]["cpu"] = cpu_us
            out[name]["evals"] = expression_evaluations(bundle, intent)
        return out
    finally:
        conn.close()
        proc.terminate()
        proc.wait(timeout=10)


def wasm_eval_us(bundle: Path, intents: dict[str, dict[str, Any]], n: int) -> dict[str, dict[str, Any]]:
    from pdp.engine.wasm import WasmEngine

    out = {}
    with WasmEngine.from_tarball(bundle, instances=1) as engine:
        for name, intent in intents.items():
            outcome = engine.evaluate(ENTRYPOINT, intent, timeout=5)["outcome"]
            for _ in range(20):
                engine.evaluate(ENTRYPOINT, intent, timeout=5)
            samples = []
            for _ in range(n):
                t0 = time.perf_counter()
                engine.evaluate(ENTRYPOINT, intent, timeout=5)
                samples.append((time.perf_counter() - t0) * 1e6)
            samples.sort()
            out[name] = {"p50": statistics.median(samples), "p90": samples[int(n * 0.9)], "outcome": outcome}
    return out


def report(fleet: str, engine: str, figures: dict[str, dict[str, Any]]) -> None:
    for kind, f in figures.items():
        line = f"{fleet:22} {engine:5} {kind:22} p50 {f['p50']:9.1f} us  p90 {f['p90']:9.1f} us"
        evals = f"  {f['evals']:6} evals" if "evals" in f else " " * 13
        cpu = f"  OPA CPU {f['cpu']:5.0f} us" if "cpu" in f else " " * 17
        print(f"{line}{evals}{cpu}  {f['outcome']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("-n", type=int, default=300, help="decisions measured per kind")
    parser.add_argument("--no-scale", action="store_true", help="only the example fleet")
    parser.add_argument("--no-wasm", action="store_true", help="only OPA")
    parser.add_argument("--policies", type=Path, default=ROOT / "policies", help="the policies to measure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="policy-cost-") as tmp:
        work = Path(tmp)
        fleets = [("example (3 tenants)", EXAMPLES / "tenants", EXAMPLES / "fleet.yaml", example_intents())]
        if not args.no_scale:
            synthetic_config(work / "scale")
            scale = work / "scale"
            fleets.append(("1k tenants/10k nodes", scale / "tenants", scale / "fleet.yaml", scale_intents()))
        for i, (name, tenants, fleet, intents) in enumerate(fleets):
            bundle, wasm = build(tenants, fleet, work / f"bundles-{i}", not args.no_wasm, args.policies)
            report(name, "opa", opa_eval_us(bundle, intents, args.n))
            if wasm is not None:
                report(name, "wasm", wasm_eval_us(wasm, intents, args.n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The sidecar engine's own CPU per OPA call (the PDP's side of the round trip), against the same
real OPA, for this checkout's `pdp.engine.opa_http` and optionally another one's, alternating:

    git show <commit>:pdp/engine/opa_http.py > /tmp/before/old_opa_http.py
    .venv/bin/python -m bench.engine_client_cpu [--before /tmp/before/old_opa_http.py] [-n 2000]

Process CPU time (`time.process_time`) over n sequential `evaluate` calls of the example deploy
intent, so waiting for OPA or for a core does not count. `--before` is a copy of the module
file, imported under another name (it imports `pdp.engine.base` from this checkout).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.policy_cost import EXAMPLES, build
from pdp.engine import opa_http
from pdp.opa.binary import find_opa
from tests.ports import free_port

RESULT = "gpupaas/decision/result"


def _module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("before_opa_http", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cpu_per_call(engine: Any, intent: dict[str, Any], n: int) -> float:
    for _ in range(100):
        engine.evaluate(RESULT, intent, timeout=5)
    started = time.process_time()
    for _ in range(n):
        engine.evaluate(RESULT, intent, timeout=5)
    return (time.process_time() - started) * 1e6 / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--before", type=Path, help="another opa_http.py to measure alongside")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    modules = {"after": opa_http} | ({"before": _module(args.before)} if args.before else {})
    intent = json.loads((EXAMPLES / "intents" / "01-acme-eu-deploy-eu.json").read_text())
    with tempfile.TemporaryDirectory(prefix="engine-cpu-") as tmp:
        bundle, _ = build(EXAMPLES / "tenants", EXAMPLES / "fleet.yaml", Path(tmp), False)
        port = free_port()
        argv = [str(find_opa()), "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        proc = subprocess.Popen([*argv, "--bundle", str(bundle)], **quiet)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health?bundles", timeout=1)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            for round_ in range(args.rounds):
                for name, module in modules.items():
                    engine = module.OpaHttpEngine(f"127.0.0.1:{port}")
                    us = cpu_per_call(engine, intent, args.n)
                    engine.close()
                    print(f"round {round_ + 1} {name:6} {us:6.0f} us of client CPU per call", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Time per decision call to the same OPA (TCP, same machine): opa-python-client's
`OpaClient.query_rule` (requests session, keep-alive) against the engine's own keep-alive
`http.client` connection (pdp/engine/opa_http.py). Blocks alternate between the two so machine
load hits both alike; medians and 90th percentiles of single calls are reported.

    .venv/bin/python -m bench.opa_client_vs_engine [N]
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pdp.embedded import EmbeddedPDP
from pdp.engine.opa_http import OpaHttpEngine
from pdp.opa.binary import PROJECT_ROOT
from pdp.opa.client import opa_client
from pdp.settings import EmbeddedSettings

BLOCK = 25


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quantiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[int(len(ordered) * 0.9)]
    return f"median {statistics.median(ordered) * 1e3:.2f} ms, p90 {p90 * 1e3:.2f} ms"


def main(n: int = 1000) -> None:
    intents: list[dict[str, Any]] = [
        json.loads(p.read_text()) for p in sorted((PROJECT_ROOT / "examples" / "intents").glob("*.json"))
    ]
    addr = f"127.0.0.1:{_free_port()}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = EmbeddedSettings.from_project(
            bundles=root / "bundles",
            keys=root / "keys",
            state=root / "state",
            decision_log=None,
            opa_addr=addr,
        )
        with EmbeddedPDP(settings), opa_client(addr, timeout=5) as client:
            engine = OpaHttpEngine(addr)
            calls = {
                "OpaClient.query_rule": lambda doc: client.query_rule(doc, "gpupaas/decision", "result")[
                    "result"
                ],
                "engine (http.client)": lambda doc: engine.evaluate(
                    "gpupaas/decision/result", doc, timeout=5
                ),
            }
            first = next(iter(calls.values()))
            for call in calls.values():  # warm up, and both answer alike
                assert call(intents[0]) == first(intents[0])
            times: dict[str, list[float]] = {name: [] for name in calls}
            # This process's CPU per call: what the PDP's threads pay under the GIL (OPA's own
            # evaluation runs in its process and is the same for both).
            cpu: dict[str, float] = dict.fromkeys(calls, 0.0)
            for block in range(n // BLOCK):
                order = list(calls) if block % 2 else list(reversed(calls))
                for name in order:
                    cpu_started = time.process_time()
                    for i in range(BLOCK):
                        started = time.perf_counter()
                        calls[name](intents[i % len(intents)])
                        times[name].append(time.perf_counter() - started)
                    cpu[name] += time.process_time() - cpu_started
            engine.close()
    for name, samples in times.items():
        print(
            f"{name:22} {len(samples)} calls: {_quantiles(samples)}, "
            f"client CPU {cpu[name] / len(samples) * 1e6:.0f} us per call"
        )
    ratio = statistics.median(times["OpaClient.query_rule"]) / statistics.median(
        times["engine (http.client)"]
    )
    print(f"OpaClient.query_rule / engine: {ratio:.2f}x (median)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))

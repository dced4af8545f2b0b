"""Per-decision cost of the Prometheus metrics (pdp/metrics/) on the decision path, in process:
the same DecisionPoint on the wasm engine (the fastest, so the share is largest) deciding the
same intents N times with metrics recorded, and with the recorder replaced by one doing nothing.
Rounds alternate so machine load hits both alike; the fastest round of each is compared (the
least disturbed by other processes). The recorder's own cost per decision is timed alone too.

    .venv/bin/python -m bench.metrics_overhead [N] [ROUNDS]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

from pdp import point as point_module
from pdp.embedded import EmbeddedPDP
from pdp.metrics import DecisionMetrics
from pdp.opa.binary import PROJECT_ROOT
from pdp.point import DecideOptions, DecisionPoint
from pdp.settings import EmbeddedSettings


class _Nothing(DecisionMetrics):
    def decided(self, *args: Any) -> None:
        return None

    def engine_error(self, *args: Any) -> None:
        return None


BLOCK = 50


def _round(point: DecisionPoint, intents: list[dict[str, Any]], n: int) -> float:
    options = DecideOptions(timeout=5, record=False, entry_point="grpc")
    started = time.perf_counter()
    for i in range(n):
        point.decide(intents[i % len(intents)], options)
    return (time.perf_counter() - started) / n


def main(n: int = 5000, rounds: int = 7) -> None:
    examples = PROJECT_ROOT / "examples"
    intents = [json.loads(p.read_text()) for p in sorted((examples / "intents").glob("*.json"))]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = EmbeddedSettings.from_project(
            bundles=root / "bundles",
            keys=root / "keys",
            state=root / "state",
            engine="wasm",
            decision_log=None,
        )
        with EmbeddedPDP(settings) as stack:
            point = DecisionPoint(stack.point.engine)
            recorder = point_module.decision_metrics
            _round(point, intents, n // 5)  # warm up both paths
            on: list[float] = []
            off: list[float] = []
            # Blocks of BLOCK decisions alternate, so a burst of load from other processes hits
            # both sides alike; each round is the sum of its blocks.
            for _ in range(rounds):
                t_on = t_off = 0.0
                for block in range(n // BLOCK):
                    # Which side runs first alternates too (the second of a pair runs warmer).
                    for side in (0, 1) if block % 2 else (1, 0):
                        point_module.decision_metrics = recorder if side else _Nothing()
                        took = _round(point, intents, BLOCK) * BLOCK
                        if side:
                            t_on += took
                        else:
                            t_off += took
                on.append(t_on / n)
                off.append(t_off / n)
    with_metrics, without = min(on), min(off)
    alone = timeit.timeit(
        lambda: recorder.decided("grpc", "deploy_model", "DENY", ["RESIDENCY_VIOLATION"], 0.001, "r"),
        number=n * 10,
    ) / (n * 10)
    print(
        f"recorder alone: {alone * 1e6:.2f} us per decision (median round of the loop: "
        f"{statistics.median(off) * 1e6:.1f} us without, {statistics.median(on) * 1e6:.1f} us with)"
    )
    print(
        f"{n} decisions x {rounds} rounds (wasm engine, in process): "
        f"{without * 1e6:.1f} us without metrics, {with_metrics * 1e6:.1f} us with; "
        f"overhead {(with_metrics - without) * 1e6:.2f} us per decision "
        f"({(with_metrics - without) / without * 100:.1f}%)"
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))

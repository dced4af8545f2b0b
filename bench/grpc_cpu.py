"""CPU time of the gRPC servicer's `Decide` and `DecideBatch` in-process on the wasm engine: the
PDP's own work per decision (request parsing, translation, validation, the policy's evaluation,
rendering, metrics, the decision log with its writer thread) without gRPC's server machinery.

`time.process_time` counts every thread of this process and nothing else, so other sessions on a
shared machine skew it far less than throughput. Compare trees in one run: `--tree DIR` imports
`pdp` from another checkout first (`git archive` of the commit before a change, with `policies`
and `examples`).

    .venv/bin/python -m bench.grpc_cpu [--tree DIR] [--calls 3000] [--no-log] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BATCH = 100


class _Context:
    """What the servicer asks of a grpc.ServicerContext on the decision path."""

    def time_remaining(self) -> float:
        return 20.0

    def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")


def _cpu_us(call: Callable[[], Any], calls: int, per_call: int = 1) -> float:
    t0 = time.process_time()
    for _ in range(calls):
        call()
    return (time.process_time() - t0) / (calls * per_call) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--tree", type=Path, help="import pdp from this checkout")
    parser.add_argument("--calls", type=int, default=3000, help="Decide calls (DecideBatch: a hundredth)")
    parser.add_argument("--no-log", action="store_true", help="without a decision log")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions")
    args = parser.parse_args()
    if args.tree is not None:
        sys.path.insert(0, str(args.tree.resolve()))
    from bench.inputs import INTENT
    from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
    from pdp.api.servicer import DecisionServicer
    from pdp.api.translate import intent_to_proto
    from pdp.engine.wasm import WasmEngine
    from pdp.point import DecisionPoint
    from pdp.records.log import DecisionLog, Integrity
    from tests.replay_fixtures import baseline

    with tempfile.TemporaryDirectory(prefix="grpc-cpu-") as tmp:
        state = Path(tmp)
        engine = WasmEngine(baseline(state / "build"), instances=4)
        log = None if args.no_log else DecisionLog(state / "decisions.sqlite", Integrity())
        servicer = DecisionServicer(DecisionPoint(engine, log))
        intent = {"kind": "deploy_model", **{k: INTENT[k] for k in ("tenant", "usage", "deploy_model")}}
        one = pb.DecideRequest(intent=intent_to_proto(intent)).SerializeToString()
        many = pb.DecideBatchRequest(intents=[intent_to_proto(intent)] * BATCH).SerializeToString()
        context: Any = _Context()

        def decide() -> bytes:
            reply = servicer.Decide(pb.DecideRequest.FromString(one), context)
            return reply.SerializeToString()  # type: ignore[no-any-return]

        def decide_batch() -> bytes:
            reply = servicer.DecideBatch(pb.DecideBatchRequest.FromString(many), context)
            return reply.SerializeToString()  # type: ignore[no-any-return]

        def evaluate() -> Any:
            return engine.evaluate("gpupaas/decision/result", intent, timeout=5)

        try:
            for _ in range(100):
                decide()
            for _ in range(3):
                decide_batch()
            batches = max(1, args.calls // BATCH)
            origin = Path(sys.modules["pdp"].__file__ or "").parent
            print(f"pdp from {origin}; log {'off' if log is None else 'on'}")
            print(f"  Decide          {_cpu_us(decide, args.calls):7.1f} us CPU per decision")
            print(f"  DecideBatch x{BATCH} {_cpu_us(decide_batch, batches, BATCH):7.1f} us CPU per decision")
            print(f"  evaluation alone {_cpu_us(evaluate, args.calls):6.1f} us CPU (engine.evaluate)")
            if args.profile:
                for name, call, count in (
                    ("Decide", decide, args.calls),
                    ("DecideBatch", decide_batch, batches),
                ):
                    profile = cProfile.Profile()
                    profile.enable()
                    for _ in range(count):
                        call()
                    profile.disable()
                    print(f"--- {name}")
                    pstats.Stats(profile).sort_stats("tottime").print_stats(20)
        finally:
            if log is not None:
                log.close()
            engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

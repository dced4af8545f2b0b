"""`pdp replay` at scale: N recorded decisions (real ones: the example intents decided by the wasm
engine, appended N times over with their kept intents) replayed on the worked example's tightened
residency policy, in process, batched.

    .venv/bin/python -m bench.replay [N] [BATCH]

Prints the time to replay (reading the log, deciding, comparing), decisions per second, and what
changed. Target (issue 15): 100,000 in under 60 s on the 2-core machine.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from pdp.replay.candidate import load_candidate
from pdp.replay.run import replay
from pdp.replay.source import Selection, recorded
from tests.replay_fixtures import ROOT, baseline, copy_records, settings, tightened_policies


def main(n: int = 100_000, batch: int = 256) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        state = Path(tmp) / "state"
        t0 = time.perf_counter()
        bundle = baseline(state)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        copy_records(Path(tmp) / "decisions.sqlite", bundle, n)
        record_s = time.perf_counter() - t0
        candidate = load_candidate(
            str(tightened_policies(Path(tmp) / "tightened")), settings(state), repo=ROOT
        )
        t0, c0 = time.perf_counter(), time.process_time()
        report = replay(recorded(Path(tmp) / "decisions.sqlite", Selection()), candidate.bundle, batch=batch)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        json.dumps(
            {
                "records": n,
                "batch": batch,
                "replayed": report.replayed,
                "changed": report.changed,
                "counts": {k: v for k, v in report.counts.items() if k != "changed"},
                "replay_seconds": round(wall, 2),
                "replay_cpu_seconds": round(cpu, 2),
                "decisions_per_second": round(report.replayed / wall),
                "baseline_build_seconds": round(build_s, 1),
                "record_seconds": round(record_s, 1),
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))

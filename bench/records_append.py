"""Per-decision cost of the decision log: N appends (the caller's side, on the decision path) and
the writer thread's work for them (chaining, SQLite, checkpoints), in process.

    .venv/bin/python -m bench.records_append [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pdp.decision import Decision, Outcome, Reason
from pdp.records.log import DecisionLog


def _decision(n: int) -> Decision:
    return Decision(
        outcome=Outcome.DENY if n % 3 else Outcome.ALLOW,
        reasons=(Reason("RESIDENCY_VIOLATION", f"tenant acme-eu may not run in us-east ({n})", "residency"),),
        bundle_revision="5d0c3e9a1b2c-g1a2b3c4d5e6f",
        decision_id=f"01J{n:023d}",
        decided_at=datetime.now(UTC),
        evaluation_ms=1.234,
        kind="deploy_model",
        tenant="acme-eu",
    )


def main(n: int = 10_000) -> None:
    decisions = [_decision(i) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        log = DecisionLog(Path(tmp) / "decisions.sqlite")
        log.flush()
        t0, p0, c0 = time.perf_counter(), time.process_time(), time.thread_time()
        for d in decisions:
            log.append(d, "sha256:" + "ab" * 32)
        append_cpu = time.thread_time() - c0
        log.close()  # drains what the writer had not written yet
        wall, cpu = time.perf_counter() - t0, time.process_time() - p0
    print(
        f"{n} decisions: append {append_cpu / n * 1e6:.1f} us CPU each on the caller; "
        f"{cpu / n * 1e6:.1f} us process CPU per decision in all (append + writer thread), "
        f"{wall / n * 1e6:.1f} us wall"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)

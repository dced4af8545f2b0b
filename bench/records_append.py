"""Per-decision cost of the decision log: N appends (the caller's side, on the decision path) and
the writer thread's work for them (chaining, SQLite, checkpoints), in process; with the decision
ids the PDP makes (time-ordered version 7 UUIDs, pdp/point.py) and, as the baseline, random
version 4 UUIDs (what it made until 2026-12-05: each record then lands on a random page of the
indexes on the id).

    .venv/bin/python -m bench.records_append [N]   # N decisions per kind of id and round
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from pdp.decision import Decision, Outcome, Reason
from pdp.point import decision_ids
from pdp.records.log import DecisionLog

IDS = {
    "uuid7 (as the PDP makes them)": lambda: decision_ids(1, datetime.now(UTC))[0],
    "uuid4 (random, the baseline)": lambda: str(uuid.uuid4()),
}


def _decision(n: int, decision_id: str) -> Decision:
    return Decision(
        outcome=Outcome.DENY if n % 3 else Outcome.ALLOW,
        reasons=(Reason("RESIDENCY_VIOLATION", f"tenant acme-eu may not run in us-east ({n})", "residency"),),
        bundle_revision="5d0c3e9a1b2c-g1a2b3c4d5e6f",
        decision_id=decision_id,
        decided_at=datetime.now(UTC),
        evaluation_ms=1.234,
        kind="deploy_model",
        tenant="acme-eu",
    )


INTENT = (
    '{"actor":"bench","admit_workload":{"kind":"Pod","name":"llama-0","namespace":"acme-prod",'
    '"resources":{"nvidia.com/gpu":1}},"kind":"admit_workload"}'
)


def measure(n: int, make_id: Callable[[], str], per_commit: int) -> tuple[float, float]:
    """Process CPU per decision, appends and writer together, and the caller's append alone (us),
    with `per_commit` records a transaction: what one webhook process commits every 20 ms at
    ~1,000 reviews/s. Each record keeps its intent, as the decision point records them."""
    decisions = [_decision(i, make_id()) for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        log = DecisionLog(Path(tmp) / "decisions.sqlite")
        log.flush()
        p0, c0 = time.process_time(), 0.0
        for start in range(0, n, per_commit):
            t = time.thread_time()
            for d in decisions[start : start + per_commit]:
                log.append(d, "sha256:" + "ab" * 32, INTENT)
            c0 += time.thread_time() - t
            log.flush()
        log.close()
        cpu = time.process_time() - p0
    return cpu / n * 1e6, c0 / n * 1e6


def main(n: int = 20_000, per_commit: int = 20, rounds: int = 3) -> None:
    measure(2_000, IDS["uuid7 (as the PDP makes them)"], per_commit)  # warm-up, not counted
    figures: dict[str, list[float]] = {name: [] for name in IDS}
    for r in range(rounds):
        names = list(IDS) if r % 2 == 0 else list(reversed(IDS))  # neither always goes first
        for name in names:
            cpu, append = measure(n, IDS[name], per_commit)
            figures[name].append(cpu)
            print(
                f"  round {r + 1} {name}: {cpu:.1f} us process CPU per decision "
                f"(append + writer), of which the caller's append {append:.1f} us"
            )
    ours, baseline = (statistics.median(v) for v in figures.values())
    print(
        f"{n} decisions in commits of {per_commit}, median of {rounds}: uuid7 {ours:.1f} us, "
        f"uuid4 {baseline:.1f} us of process CPU per decision; uuid7 / uuid4 {ours / baseline:.2f}x"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)

"""Central decision records: records per second two PDP processes write into one PostgreSQL.

    .venv/bin/python -m bench.records_central [POSTGRES_URL] [SECONDS]

URL: a role that may create databases (default $PDP_TEST_POSTGRES_URL); a database is created for
the run and dropped after. Two processes (two PDP writers), each its own DecisionLog on the shared
table, checkpointing to one sink, for SECONDS each:
- queued (the default mode): each process appends as fast as it can; records committed per second
  by both, and what was still queued when the time was up (the writer's backlog);
- durable (--records-durable): 8 threads per process, each append waits for its commit (group
  commit); records acknowledged per second by both;
- pdp, pdp-durable: each process a whole embedded PDP (the wasm engine, the repository's tenants
  and policies) deciding one example intent in a loop on one thread: decisions and their records
  per second, what two PDP processes at full load write.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from pdp.decision import Decision, Outcome, Reason
from pdp.records.log import DecisionLog, Integrity
from pdp.records.postgres import dsn
from tests.postgres import scratch_database

_THREADS = 8


def _decision(n: int, writer: int) -> Decision:
    return Decision(
        outcome=Outcome.DENY if n % 3 else Outcome.ALLOW,
        reasons=(Reason("RESIDENCY_VIOLATION", f"tenant acme-eu may not run in us-east ({n})", "residency"),),
        bundle_revision="5d0c3e9a1b2c-g1a2b3c4d5e6f",
        decision_id=f"{writer}-{uuid.uuid4()}",
        decided_at=datetime.now(UTC),
        evaluation_ms=1.234,
        kind="deploy_model",
        tenant=f"tenant-{n % 50}",
    )


def _pdp(url: str, tmp: str, index: int, durable: bool, seconds: float, out: Any) -> None:
    from pdp.embedded import EmbeddedPDP
    from pdp.opa.binary import PROJECT_ROOT
    from pdp.settings import EmbeddedSettings

    here = Path(tmp) / f"replica-{index}"
    settings = EmbeddedSettings.from_project(
        engine="wasm", bundles=here / "bundles", keys=here / "keys", state=here / "state",
        decision_log=here / "state" / "decisions.sqlite",
        records=Integrity(url=url, writer="bench", durable=durable,
                          checkpoints=f"file:{tmp}/sink/decisions.jsonl", signing_key=Path(tmp) / "key.pem"),
    )  # fmt: skip
    intent = json.loads((PROJECT_ROOT / "examples" / "intents" / "01-acme-eu-deploy-eu.json").read_text())
    with EmbeddedPDP(settings) as stack:
        log = stack.decision_log
        assert log is not None
        point = stack.point
        point.decide(intent)  # warm
        start = log._committed
        end, n = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            point.decide(intent)
            n += 1
        committed = log._committed - start
        writer = log.writer
    out.put({"writer": writer, "appended": n, "committed_in_time": committed})


def _writer(url: str, tmp: str, index: int, durable: bool, seconds: float, out: Any) -> None:
    log = DecisionLog(
        Path(tmp) / f"replica-{index}" / "decisions.sqlite",
        Integrity(
            url=url, writer="bench", durable=durable, checkpoints=f"file:{tmp}/sink/decisions.jsonl",
            signing_key=Path(tmp) / "key.pem",
        ),
    )  # fmt: skip
    digest = "sha256:" + "ab" * 32
    end = time.monotonic() + seconds
    counts = [0] * _THREADS

    def loop(t: int) -> None:
        n = 0
        while time.monotonic() < end:
            log.append(_decision(n, index), digest)
            n += 1
        counts[t] = n

    threads = [threading.Thread(target=loop, args=(t,)) for t in range(_THREADS if durable else 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    committed = log._committed  # the writer's own count of records committed
    appended = sum(counts)
    log.close()
    out.put({"writer": log.writer, "appended": appended, "committed_in_time": committed})


def _run(url: str, durable: bool, seconds: float, pdp: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        DecisionLog(
            Path(tmp) / "schema" / "d.sqlite", Integrity(url=url, signing_key=Path(tmp) / "key.pem")
        ).close()
        out: Any = multiprocessing.Queue()
        procs = [
            multiprocessing.Process(target=_writer, args=(url, tmp, i, durable, seconds, out))
            for i in range(2)
        ]
        for p in procs:
            p.start()
        results = [out.get(timeout=seconds + 300) for _ in procs]
        for p in procs:
            p.join()
    with psycopg.connect(dsn(url)) as conn:
        rows = conn.execute("SELECT count(*) FROM pdp_decision_records").fetchone()
    committed = sum(r["committed_in_time"] for r in results)
    return {
        "mode": ("pdp-" if pdp else "") + ("durable" if durable else "queued"),
        "seconds": seconds,
        "writers": [r["writer"] for r in results],
        "records_per_second": round(committed / seconds),
        "appended": sum(r["appended"] for r in results),
        "backlog_at_end": sum(r["appended"] - r["committed_in_time"] for r in results),
        "rows_after_close": rows[0] if rows else 0,
    }


def main(url: str, seconds: float) -> None:
    for pdp, durable in ((False, False), (False, True), (True, False), (True, True)):  # a database each
        with scratch_database("bench_records", server=url) as database:
            print(json.dumps(_run(database, durable, seconds, pdp)), flush=True)


if __name__ == "__main__":
    main(
        sys.argv[1] if len(sys.argv) > 1 else os.environ["PDP_TEST_POSTGRES_URL"],
        float(sys.argv[2]) if len(sys.argv) > 2 else 10.0,
    )

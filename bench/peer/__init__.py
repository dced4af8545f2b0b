"""The admission webhook against its peer in the same run: OPA Gatekeeper (bench/gatekeeper.py)
serving the equivalent residency rule, driven with the same AdmissionReview by the same vegeta at
the same loads as each configuration of the project's webhook.

Loads: 500/s, saturation (16 workers, closed loop), 1,000/s, and open-loop overload at twice the
path's own capacity. Each webhook row carries its ratio to Gatekeeper's row at the same load, and
`targets()` judges issue 16's targets from the rows. That is `scripts/bench`'s one pass; the fair
comparison of issue 32 (both servers up at once, verdicts agreed before every round, HTTP/2 and
HTTP/1.1, repeats, steal) is `python -m bench.peer` (__main__.py, fair.py, verdicts.py, alpn.py,
report.py).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import Results, measure

PEER = "g Gatekeeper (peer)"
WEBHOOK_TIMEOUT_MS = 10_000


def drive(
    results: Results, path: str, url: str, pids: Callable[[], dict[str, int]], body: bytes, d: float
) -> None:
    """One front at every load; overload is twice the capacity this front just showed. First it
    must give both bench bodies their verdicts (bench/peer/verdicts.py): no error path is timed."""
    from bench.load import vegeta
    from bench.peer.verdicts import agree, bench_bodies

    agree({path: url}, *bench_bodies())

    peer = None if path == PEER else "g"
    measure(results, path, "500/s", pids(), lambda: vegeta(url, body, rate=500, duration=d), peer=peer)
    capacity = measure(
        results, path, "saturation", pids(), lambda: vegeta(url, body, rate=None, duration=d), peer=peer
    )["throughput"]
    measure(results, path, "1000/s", pids(), lambda: vegeta(url, body, rate=1000, duration=d), peer=peer)
    overload = max(int(2 * capacity), 200)
    measure(
        results, path, "overload 2x", pids(), lambda: vegeta(url, body, rate=overload, duration=d), peer=peer
    )
    results.rows[-1]["offered"] = overload


def gatekeeper(results: Results, work: Path, body: bytes, d: float) -> None:
    """Gatekeeper's rows; skipped, and said so, when it is not built (scripts/build-gatekeeper)."""
    from bench.gatekeeper import cache_dir, running_peer

    if not (cache_dir() / "gatekeeper").exists():
        print(f"  peer skipped: {cache_dir()} has no manager (scripts/build-gatekeeper)", flush=True)
        return
    examples = work / "examples"
    scratch = Path(tempfile.mkdtemp(prefix="gatekeeper-", dir=work))
    with running_peer(scratch, examples / "tenants", examples / "fleet.yaml") as peer:
        drive(results, PEER, peer.url, lambda: {"gatekeeper": peer.pid}, body, d)


def targets(results: Results) -> list[dict[str, Any]]:
    """Issue 16's webhook targets, judged on this run's rows for each webhook configuration."""
    rows = {(r["path"], r["load"]): r for r in results.rows}
    peer = {load: rows.get((PEER, load)) for load in ("500/s", "saturation", "1000/s")}
    if not all(peer.values()):
        return []
    out = []
    for path in sorted({r["path"] for r in results.rows if r.get("peer") == "g"}):
        own = {load: rows[(path, load)] for load in ("500/s", "saturation", "1000/s", "overload 2x")}
        capacity, overload = own["saturation"]["throughput"], own["overload 2x"]
        checks = {
            "capacity >= 1.0x Gatekeeper": capacity >= peer["saturation"]["throughput"],  # type: ignore[index]
            "p99 at 500/s <= Gatekeeper's": own["500/s"]["p99_ms"] <= peer["500/s"]["p99_ms"],  # type: ignore[index]
            "1,000/s: 0 errors, p99 <= 2x Gatekeeper's": own["1000/s"]["errors"] == 0
            and own["1000/s"]["p99_ms"] <= 2 * peer["1000/s"]["p99_ms"],  # type: ignore[index]
            "2x overload: >= 90% of capacity served": overload["throughput"] >= 0.9 * capacity,
            "2x overload: every answer inside the timeout": overload["timeouts"] == 0
            and (overload["answered_max_ms"] or 0) < WEBHOOK_TIMEOUT_MS,
            "2x overload: excess refused with an HTTP status": overload["connection_errors"] == 0,
        }
        out.append({"path": path, **checks})
    return out

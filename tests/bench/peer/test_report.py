"""The table docs/performance.md opens with: each configuration's figures beside its ratio to
Gatekeeper's of the same repeat and protocol, and the targets it met."""

from __future__ import annotations

from typing import Any

from bench.peer import fair
from bench.peer.report import table


def _rows(server: str, capacity: float, p99: float, repeat: int = 1) -> list[dict[str, Any]]:
    base = {"repeat": repeat, "protocol": "h2", "negotiated": "h2", "server": server, "errors": 0}
    base |= {"timeouts": 0, "connection_errors": 0, "refused": 0, "steal_attempts": [1.5]}
    rows = [
        {
            **base,
            "load": load,
            "body": body,
            "throughput": capacity if load == "saturation" else 500.0,
            "p99_ms": p99,
        }
        for load in ("saturation", "500/s")
        for body in ("allowed", "denied")
    ]
    overload = {"load": "overload 2x", "body": "allowed", "throughput": capacity * 0.95, "p99_ms": 80.0}
    return [*rows, {**base, **overload, "refused": 4_000}]


def test_each_configuration_beside_its_ratio_to_the_peer_of_its_repeat() -> None:
    rows = _rows("gatekeeper", 2000, 4.0) + _rows("wasm", 2500, 2.0)
    rows += _rows("gatekeeper", 1000, 8.0, repeat=2) + _rows("wasm", 2500, 2.0, repeat=2)
    targets = [
        {"repeat": r, "protocol": "h2", "config": "wasm", **fair.judge(rows, r, "h2", "wasm")} for r in (1, 2)
    ]
    lines = table({"rows": rows, "targets": targets}).splitlines()
    first, second = (line for line in lines if "| wasm |" in line)
    assert "| 2,500 (1.25x) |" in first and "| 2.0 (0.50x) |" in first and "| 6/6 |" in first
    assert "| 2,500 (2.50x) |" in second
    assert "2,375 (95%), 4,000, 0" in first
    assert lines[2].startswith("| 1 | h2 (h2) | gatekeeper |")

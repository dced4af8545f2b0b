"""The fair peer run's pure parts: a point measured under high steal is measured again, and the
targets are judged against Gatekeeper's rows of the same repeat and protocol."""

from __future__ import annotations

from typing import Any

import pytest

from bench.peer import fair


def test_a_point_under_high_steal_is_measured_again_and_the_least_stolen_kept() -> None:
    steals = iter([35.0, 12.0, 18.0])
    kept = fair.measure_point(lambda: {"throughput": 1.0, "steal_pct": next(steals)})
    assert kept["steal_pct"] == 12.0
    assert kept["steal_attempts"] == [35.0, 12.0, 18.0]


def test_a_quiet_point_is_measured_once() -> None:
    calls: list[float] = []

    def quiet() -> dict[str, float]:
        calls.append(2.0)
        return {"steal_pct": 2.0}

    kept = fair.measure_point(quiet)
    assert len(calls) == 1 and kept["steal_attempts"] == [2.0]


def test_servers_take_turns_at_going_first() -> None:
    servers = ["gatekeeper", "sidecar", "wasm"]
    firsts = {fair.order(servers, r)[0] for r in range(3)}
    assert firsts == set(servers)


def _rows(
    server: str, capacity: float, p99: float, served_2x: float, **overload: Any
) -> list[dict[str, Any]]:
    base = {
        "repeat": 1,
        "protocol": "h2",
        "server": server,
        "errors": 0,
        "timeouts": 0,
        "connection_errors": 0,
    }
    rows = []
    for body in ("allowed", "denied"):
        rows.append({**base, "load": "saturation", "body": body, "throughput": capacity, "p99_ms": 9.0})
        rows.append({**base, "load": "500/s", "body": body, "throughput": 500.0, "p99_ms": p99})
    rows.append(
        {
            **base,
            "load": "overload 2x",
            "body": "allowed",
            "throughput": served_2x,
            "p99_ms": 50.0,
            **overload,
        }
    )
    return rows


def test_judged_against_the_peer_of_the_same_repeat_and_protocol() -> None:
    rows = _rows("gatekeeper", 2000, 3.0, 1900) + _rows("wasm", 2500, 2.5, 2300)
    # another repeat's slower peer must not make the config look better
    rows += [{**r, "repeat": 2, "throughput": 100.0} for r in _rows("gatekeeper", 0, 0, 0)]
    checks = fair.judge(rows, 1, "h2", "wasm")
    assert all(checks.values()), checks
    assert fair.ratios(rows, 1, "h2", "wasm")["capacity allowed"] == 1.25


@pytest.mark.parametrize(
    ("config", "missed"),
    [
        (_rows("sidecar", 900, 2.5, 890), "capacity >= 1.0x Gatekeeper (allowed)"),
        (_rows("sidecar", 2500, 4.0, 2300), "p99 at 500/s <= Gatekeeper's (denied)"),
        (_rows("sidecar", 2500, 2.5, 2000), "2x overload: >= 90% of capacity answered in time"),
        (
            _rows("sidecar", 2500, 2.5, 2300, connection_errors=40),
            "2x overload: the rest refused with a status, none reset",
        ),
    ],
)
def test_each_target_can_be_missed(config: list[dict[str, Any]], missed: str) -> None:
    checks = fair.judge(_rows("gatekeeper", 2000, 3.0, 1900) + config, 1, "h2", "sidecar")
    assert checks[missed] is False
    assert sum(not ok for ok in checks.values()) <= 2

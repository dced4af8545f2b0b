"""The enforcement page's counting on its own: per reason, per asker, per hour."""

from __future__ import annotations

from datetime import UTC, datetime

from pdp.product.console.pages.enforcement.views import counts, per_hour


def _denial(at: str, codes: list[str], principal: str | None = None) -> dict[str, object]:
    return {"decided_at": at, "kind": "deploy_model", "principal": principal,
            "reasons": [{"code": c} for c in codes]}  # fmt: skip


def test_denials_are_counted_per_reason_asker_and_hour() -> None:
    denials = [
        _denial("2026-12-04T10:05:00Z", ["RESIDENCY_VIOLATION"]),
        _denial("2026-12-04T10:55:00Z", ["RESIDENCY_VIOLATION", "QUOTA_EXCEEDED"], "substrate:slurm"),
        _denial("2026-12-04T11:10:00+00:00", ["QUOTA_EXCEEDED"], "substrate:slurm"),
    ]
    got = counts(denials)
    assert got["reason"] == [("RESIDENCY_VIOLATION", 2), ("QUOTA_EXCEEDED", 2)]
    assert got["asker"] == [("substrate:slurm", 2), ("lifecycle (in process)", 1)]
    start, end = datetime(2026, 12, 4, 10, 0, tzinfo=UTC), datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    c = per_hour(denials, start, end)
    assert c.labels == ("QUOTA_EXCEEDED", "RESIDENCY_VIOLATION")
    assert c.rows == ((1.0, 2.0), (1.0, 0.0), (0.0, 0.0))  # 10:00, 11:00, 12:00

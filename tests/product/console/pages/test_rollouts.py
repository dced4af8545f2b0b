"""The rollouts page's grouping of the audit trail on its own."""

from __future__ import annotations

from pdp.product.console.pages.rollouts import rollouts


def test_rollout_records_are_grouped_per_rollout_newest_first() -> None:
    records = [
        {"at": "1", "event": "policy.rollout.started", "detail": {"rollout": "rollout-a"}},
        {"at": "2", "event": "decision", "detail": {}},
        {"at": "3", "event": "policy.rollout.started", "detail": {"rollout": "rollout-b"}},
        {"at": "4", "event": "policy.rollout.activated", "detail": {"rollout": "rollout-a"}},
        {"at": "5", "event": "policy.rollout.failed", "detail": {"rollout": "rollout-b"}},
    ]
    got = rollouts(records)
    assert [(g["rollout"], g["last"], len(g["events"])) for g in got] == [
        ("rollout-b", "policy.rollout.failed", 2),
        ("rollout-a", "policy.rollout.activated", 2),
    ]

"""What an approval grants (pdp/lifecycle/services/grants.py), and the trail checker the concurrency tests
rely on (tests/lifecycle/ledger.py) catching what it must."""

from __future__ import annotations

from typing import Any

from pdp.lifecycle.services import grants
from tests.lifecycle.ledger import replay

H100 = "H100-80GB"


def _scale(current: int, target: int, usage: int) -> dict[str, Any]:
    return {
        "kind": "scale",
        "tenant": "t",
        "usage": {H100: usage},
        "scale": {"deployment": "serve", "gpu_class": H100, "gpus_per_replica": 1,
                  "current_replicas": current, "target_replicas": target},
    }  # fmt: skip


def _needs(code: str = "QUOTA_APPROVAL_REQUIRED", decision_id: str = "d1") -> dict[str, Any]:
    return {"outcome": "NEEDS_APPROVAL", "reasons": [{"code": code}], "decision_id": decision_id}


def test_a_grant_covers_the_total_it_approved_and_no_more() -> None:
    granted = grants.grant(_scale(4, 10, 4), _needs())  # 4 + 6 = 10 approved
    assert granted == {
        "decision_id": "d1",
        "codes": ["QUOTA_APPROVAL_REQUIRED"],
        "gpu_class": H100,
        "total": 10,
    }
    # Decided again after a scale-down elsewhere: 2 + 8 = 10, within the grant.
    assert grants.covers(granted, _scale(2, 10, 2), _needs(decision_id="d2"))
    # Usage grew meanwhile: 6 + 6 = 12 > 10 needs a new approval.
    assert not grants.covers(granted, _scale(4, 10, 6), _needs(decision_id="d2"))
    # Another reason than the approved one, or no grant at all.
    assert not grants.covers(granted, _scale(2, 10, 2), _needs("SLA_APPROVAL_REQUIRED"))
    assert not grants.covers({}, _scale(2, 10, 2), _needs())
    # An ALLOW or a DENY is never "covered": it is what it is.
    assert not grants.covers(granted, _scale(2, 10, 2), {"outcome": "DENY", "reasons": []})


def test_a_quota_grant_covers_the_same_change_asked_again() -> None:
    quota = {
        "kind": "update_quotas",
        "tenant": "t",
        "usage": {},
        "update_quotas": {"entitlements": {H100: 12}},
    }
    granted = grants.grant(quota, _needs())
    assert "total" not in granted and grants.covers(granted, quota, _needs(decision_id="d2"))


def _record(
    seq: int, event: str, detail: dict[str, Any], decision_id: str = "", wf: str = "w"
) -> dict[str, Any]:
    return {"seq": seq, "event": event, "detail": detail, "decision_id": decision_id, "workflow_id": wf}


def _decision(
    seq: int, decision_id: str, outcome: str, usage: dict[str, int], **extra: Any
) -> dict[str, Any]:
    detail = {"kind": "scale", "outcome": outcome, "usage": usage, **extra}
    return _record(seq, "decision", detail, decision_id)


def _moved(seq: int, replicas: int, decision_id: str) -> dict[str, Any]:
    spec = {"gpu_class": H100, "gpus_per_replica": 1, "replicas": replicas}
    return _record(
        seq, "deployment.transition", {"deployment": "serve", "to": "running", "spec": spec}, decision_id
    )


def test_the_ledger_flags_stale_figures_and_unapproved_overspend() -> None:
    trail = [
        _decision(1, "a", "ALLOW", {}, payload={"deployment": "serve", "current_replicas": 0}),
        _moved(2, 4, "a"),
        # decided with the usage 2 of an earlier moment (the reported bug), and applied: 10 > 8
        _decision(3, "b", "ALLOW", {H100: 2}, payload={"deployment": "serve", "current_replicas": 4}),
        _moved(4, 10, "b"),
    ]
    problems = replay(trail, {H100: 8}).problems
    assert any("states usage {'H100-80GB': 2}; the store held {'H100-80GB': 4}" in p for p in problems)
    assert any("brings H100-80GB to 10 GPUs, above the entitlement of 8" in p for p in problems)


def test_the_ledger_accepts_an_overspend_an_approval_granted_and_no_more() -> None:
    grant = {"decision_id": "n", "codes": ["QUOTA_APPROVAL_REQUIRED"], "gpu_class": H100, "total": 10}
    payload = {"deployment": "serve", "current_replicas": 4}
    trail = [
        _decision(1, "a", "ALLOW", {}, payload={"deployment": "serve", "current_replicas": 0}),
        _moved(2, 4, "a"),
        _decision(3, "n", "NEEDS_APPROVAL", {H100: 4}, payload=payload),
        _record(4, "approval.approved", {}, "n"),
        _decision(5, "m", "NEEDS_APPROVAL", {H100: 4}, payload=payload, grant=grant),
        _moved(6, 10, "m"),
    ]
    assert replay(trail, {H100: 8}).problems == []
    unapproved = [r for r in trail if r["event"] != "approval.approved"]
    assert "without an approved grant" in replay(unapproved, {H100: 8}).problems[0]
    beyond = [*trail[:5], _moved(6, 11, "m")]
    assert "brings H100-80GB to 11 GPUs" in replay(beyond, {H100: 8}).problems[0]

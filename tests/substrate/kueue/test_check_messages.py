"""The exact message of each check state a Workload's owner reads (`kubectl describe workload`):
pinned, so that the one decision shape every enforcement point shares (pdp/decision.py) changes
no message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pdp.decision import Decision, Outcome, Reason
from pdp.substrate.kueue import checks

WORKLOAD: dict[str, Any] = {"metadata": {"namespace": "acme-prod", "name": "job-x"}}
MAIN = checks.PodSetIntent("main", {}, {"kind": "admit_workload"})
IDLE = checks.PodSetIntent("idle", {}, None)


def decided(outcome: str, *reasons: tuple[str, str, str], **more: Any) -> Decision:
    return Decision(
        outcome=Outcome(outcome),
        reasons=tuple(Reason(c, m, p) for c, m, p in reasons),
        constraints=more.pop("constraints", {}),
        bundle_revision=more.pop("bundle_revision", "rev-1"),
        decision_id=more.pop("decision_id", "d-1"),
        decided_at=datetime(2025, 1, 1, tzinfo=UTC),
        evaluation_ms=1.0,
        kind="admit_workload",
        tenant=more.pop("tenant", "acme-eu"),
    )


def entry(*decisions: tuple[checks.PodSetIntent, Decision | None]) -> dict[str, Any]:
    return checks.check_entry("gpupaas-pdp", WORKLOAD, list(decisions))


def test_a_denial_names_the_podset_reasons_and_provenance() -> None:
    denied = decided(
        "DENY",
        ("RESIDENCY_VIOLATION", "region us-east-1 is outside eu-only", "gpupaas.residency"),
        ("SHARING_NOT_ALLOWED", "no sharing", "gpupaas.sharing"),
    )
    assert entry((MAIN, denied)) == {
        "name": "gpupaas-pdp",
        "state": "Rejected",
        "message": "gpupaas denied workload acme-prod/job-x podset main: [RESIDENCY_VIOLATION] region "
        "us-east-1 is outside eu-only; [SHARING_NOT_ALLOWED] no sharing "
        "(tenant acme-eu, bundle rev-1, decision d-1)",
    }


def test_needs_approval_is_rejected_saying_admission_cannot_wait() -> None:
    approval = decided("NEEDS_APPROVAL", ("QUOTA_APPROVAL_REQUIRED", "above entitlement", "q"), tenant="")
    assert entry((MAIN, approval))["message"] == (
        "gpupaas: workload acme-prod/job-x podset main needs approval, which admission cannot wait "
        "for: [QUOTA_APPROVAL_REQUIRED] above entitlement (bundle rev-1, decision d-1)"
    )


def test_an_engine_failure_is_a_retry_saying_it_fails_closed() -> None:
    failed = decided("DENY", ("ENGINE_UNAVAILABLE", "connection refused", "pdp.engine"), bundle_revision="")
    assert entry((MAIN, failed)) == {
        "name": "gpupaas-pdp",
        "state": "Retry",
        "message": "gpupaas could not decide workload acme-prod/job-x, failing closed: [ENGINE_UNAVAILABLE] "
        "connection refused (tenant acme-eu, bundle -, decision d-1); again in 10 s",
        "requeueAfterSeconds": 10,
    }


def test_an_allowed_workload_names_each_decision_and_a_podset_without_gpus_none() -> None:
    allowed = decided("ALLOW", decision_id="d-7")
    ready = entry((MAIN, allowed), (IDLE, None))
    assert ready["state"] == "Ready"
    assert ready["message"] == "gpupaas allowed workload acme-prod/job-x (bundle rev-1, decisions main: d-7)"
    assert [u["name"] for u in ready["podSetUpdates"]] == ["main"]
    assert entry((IDLE, None)) == {
        "name": "gpupaas-pdp",
        "state": "Ready",
        "message": "gpupaas allowed workload acme-prod/job-x (bundle -, decisions no GPU asked for)",
    }


def test_a_long_message_is_cut_to_the_limit() -> None:
    long = decided("DENY", ("X", "m" * 5000, "p"))
    message = entry((MAIN, long))["message"]
    assert len(message) == checks.MAX_MESSAGE and message.endswith("…")

"""The exact text a `kubectl apply` user reads for each kind of refusal: pinned, so that the one
decision shape every enforcement point shares (pdp/decision.py) changes no message."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pdp.decision import ENGINE_POLICY, Decision, Outcome, Reason
from pdp.substrate.kubernetes.enforcement.admission import parse_review, response_for_decision
from tests.substrate.kubernetes.enforcement.conftest import body, pod, review

GPU_POD = parse_review(body(review(pod("llama-0", limits={"nvidia.com/gpu": "1"}), "acme-prod", uid="u-9")))
PLAIN_POD = parse_review(
    body(review(pod("web", node_selector={"topology.kubernetes.io/region": "eu-west-1"}), "acme-prod"))
)
ENGINE_DOWN = Reason("ENGINE_UNAVAILABLE", "connection refused", ENGINE_POLICY)


def decision(outcome: Outcome, *reasons: Reason, tenant: str = "acme-eu", **more: Any) -> Decision:
    return Decision(
        outcome=outcome,
        reasons=reasons,
        bundle_revision=more.pop("bundle_revision", "rev-1"),
        decision_id="d-1",
        decided_at=datetime(2025, 1, 1, tzinfo=UTC),
        evaluation_ms=1.0,
        kind="admit_workload",
        tenant=tenant,
        **more,
    )


def status_message(d: Decision, failure_mode: str = "closed") -> str:
    return str(response_for_decision(GPU_POD, d, failure_mode=failure_mode)["response"]["status"]["message"])


def test_an_engine_failure_says_it_fails_closed_with_reasons_and_provenance() -> None:
    assert status_message(decision(Outcome.DENY, ENGINE_DOWN, tenant="", bundle_revision="")) == (
        "gpupaas could not decide Pod acme-prod/llama-0, failing closed: [ENGINE_UNAVAILABLE] "
        "connection refused (bundle -, decision d-1)"
    )


def test_an_engine_failure_on_a_pod_without_gpus_is_admitted_with_a_warning_when_open() -> None:
    d = decision(Outcome.DENY, ENGINE_DOWN)
    response = response_for_decision(PLAIN_POD, d, failure_mode="open-non-gpu")["response"]
    assert response["warnings"] == [
        "gpupaas could not decide, admitted without policy (fail-open): "
        "[ENGINE_UNAVAILABLE] connection refused"
    ]


def test_needs_approval_says_how_to_get_it() -> None:
    d = decision(Outcome.NEEDS_APPROVAL, Reason("QUOTA_APPROVAL_REQUIRED", "above entitlement", "q"))
    assert status_message(d) == (
        "gpupaas: Pod acme-prod/llama-0 needs approval, which admission cannot wait for; get it "
        "approved, then apply again: [QUOTA_APPROVAL_REQUIRED] above entitlement "
        "(tenant acme-eu, bundle rev-1, decision d-1)"
    )


def test_a_pod_on_a_fixed_node_is_told_why_the_node_is_refused() -> None:
    rejected = {"node": "n1", "reasons": [{"code": "POOL_DEDICATED", "message": "pool p1 is dedicated"}]}
    d = decision(
        Outcome.DENY,
        Reason("NO_ELIGIBLE_NODE", "no node fits", "gpupaas.placement"),
        constraints={"rejected_nodes": [rejected]},
    )
    assert status_message(d) == (
        "gpupaas denied Pod acme-prod/llama-0: [NO_ELIGIBLE_NODE] no node fits; [POOL_DEDICATED] pool "
        "p1 is dedicated (tenant acme-eu, bundle rev-1, decision d-1)"
    )

"""AdmissionReview parsing and rendering (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from pdp.decision import ENGINE_POLICY, Decision, Outcome, Reason
from pdp.substrate.kubernetes.enforcement.admission import (
    BadReview,
    parse_review,
    response_for_decision,
    review_response,
)
from tests.substrate.kubernetes.enforcement.conftest import body, pod, review


def decision(outcome: Outcome, *reasons: Reason, warnings: tuple[Reason, ...] = ()) -> Decision:
    return Decision(
        outcome=outcome,
        reasons=reasons,
        warnings=warnings,
        bundle_revision="rev-1",
        decision_id="d-1",
        decided_at=datetime.now(UTC),
        evaluation_ms=1.0,
        kind="admit_workload",
        tenant="acme-eu",
    )


def test_parse_a_pod_review() -> None:
    request = parse_review(body(review(pod("llama-0"), "acme-prod", uid="u-1")))
    assert request.uid == "u-1"
    assert request.kind == "Pod"
    assert request.namespace == "acme-prod"
    assert request.name == "llama-0"
    assert request.operation == "CREATE"
    assert request.object is not None and request.object["metadata"]["name"] == "llama-0"
    assert request.dry_run is False
    assert request.username == "alice@example.com"
    assert request.subject == "Pod acme-prod/llama-0"


def test_generate_name_and_dry_run() -> None:
    obj = pod()
    obj["metadata"] = {"generateName": "trainer-"}
    doc = review(obj, "ns")
    doc["request"]["dryRun"] = True
    request = parse_review(body(doc))
    assert request.name == "trainer-" and request.dry_run


def _mutated(change: Any) -> bytes:
    doc = review(pod(), "ns")
    change(doc)
    return body(doc)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"review"', "not a JSON object"),
        (_mutated(lambda d: d.update(apiVersion="admission.k8s.io/v1beta1")), "apiVersion"),
        (_mutated(lambda d: d.pop("apiVersion")), "apiVersion"),
        (_mutated(lambda d: d.update(kind="AdmissionResponse")), "kind"),
        (_mutated(lambda d: d.pop("request")), "request is missing"),
        (_mutated(lambda d: d.update(request=[])), "request is missing"),
        (_mutated(lambda d: d["request"].pop("uid")), "request.uid"),
        (_mutated(lambda d: d["request"].update(uid="")), "request.uid"),
        (_mutated(lambda d: d["request"].update(uid=7)), "request.uid"),
        (_mutated(lambda d: d["request"].pop("object")), "request.object is missing for CREATE"),
        (
            _mutated(lambda d: d["request"].update(operation="UPDATE", object="x")),
            "request.object is missing for UPDATE",
        ),
    ],
)
def test_bad_reviews_are_400_saying_what_is_wrong(raw: bytes, needle: str) -> None:
    with pytest.raises(BadReview) as raised:
        parse_review(raw)
    assert raised.value.status == 400
    assert needle in raised.value.message


def test_delete_needs_no_object() -> None:
    request = parse_review(body(review(None, "ns", operation="DELETE")))
    assert request.object is None and request.operation == "DELETE"


def test_review_response_shape() -> None:
    long = "x" * 500
    doc = review_response(
        "u-1", allowed=False, message="no", warnings=[long, "short"], audit_annotations={"outcome": "DENY"}
    )
    assert doc["apiVersion"] == "admission.k8s.io/v1" and doc["kind"] == "AdmissionReview"
    response = doc["response"]
    assert response["uid"] == "u-1" and response["allowed"] is False
    assert response["status"] == {"code": 403, "message": "no"}
    assert [len(w) for w in response["warnings"]] == [120, 5]
    assert response["auditAnnotations"] == {"outcome": "DENY"}
    assert review_response("u", allowed=False, code=400, message="bad")["response"]["status"]["code"] == 400
    assert "status" not in review_response("u", allowed=True)["response"]
    json.dumps(doc)


REQUEST = parse_review(body(review(pod("llama-0", limits={"nvidia.com/gpu": "1"}), "acme-prod", uid="u-9")))
PLAIN = parse_review(
    body(review(pod("web", node_selector={"topology.kubernetes.io/region": "eu-west-1"}), "acme-prod"))
)


def test_allow_carries_warnings_and_audit_annotations() -> None:
    d = decision(Outcome.ALLOW, warnings=(Reason("RESIDENCY_UNCONSTRAINED", "add the affinity", "p"),))
    response = response_for_decision(REQUEST, d, failure_mode="closed")["response"]
    assert response["allowed"] is True and response["uid"] == "u-9"
    assert response["warnings"] == ["add the affinity"]
    assert response["auditAnnotations"] == {
        "decision-id": "d-1",
        "bundle-revision": "rev-1",
        "outcome": "ALLOW",
    }


def test_deny_message_lists_every_reason_and_the_provenance() -> None:
    d = decision(
        Outcome.DENY,
        Reason("RESIDENCY_VIOLATION", "region us-east-1 is outside eu-only", "gpupaas.residency"),
        Reason("SHARING_NOT_ALLOWED", "no sharing", "gpupaas.sharing"),
    )
    response = response_for_decision(REQUEST, d, failure_mode="closed")["response"]
    assert response["allowed"] is False and response["status"]["code"] == 403
    assert response["status"]["message"] == (
        "gpupaas denied Pod acme-prod/llama-0: [RESIDENCY_VIOLATION] region us-east-1 is outside eu-only; "
        "[SHARING_NOT_ALLOWED] no sharing (tenant acme-eu, bundle rev-1, decision d-1)"
    )
    assert response["auditAnnotations"]["outcome"] == "DENY"


def test_needs_approval_is_a_denial_saying_approval_is_required() -> None:
    d = decision(Outcome.NEEDS_APPROVAL, Reason("QUOTA_APPROVAL_REQUIRED", "above entitlement", "a"))
    response = response_for_decision(REQUEST, d, failure_mode="closed")["response"]
    assert response["allowed"] is False
    assert "needs approval" in response["status"]["message"]
    assert "[QUOTA_APPROVAL_REQUIRED] above entitlement" in response["status"]["message"]
    assert response["auditAnnotations"]["outcome"] == "NEEDS_APPROVAL"


ENGINE_DOWN = decision(Outcome.DENY, Reason("ENGINE_UNAVAILABLE", "connection refused", ENGINE_POLICY))


def test_engine_failure_fails_closed_by_default() -> None:
    for request in (REQUEST, PLAIN):
        response = response_for_decision(request, ENGINE_DOWN, failure_mode="closed")["response"]
        assert response["allowed"] is False
        assert "ENGINE_UNAVAILABLE" in response["status"]["message"]


def test_open_non_gpu_lets_only_objects_without_gpus_through() -> None:
    gpu = response_for_decision(REQUEST, ENGINE_DOWN, failure_mode="open-non-gpu")["response"]
    assert gpu["allowed"] is False
    plain = response_for_decision(PLAIN, ENGINE_DOWN, failure_mode="open-non-gpu")["response"]
    assert plain["allowed"] is True
    assert "fail-open" in plain["warnings"][0] and len(plain["warnings"][0]) <= 120
    assert plain["auditAnnotations"]["outcome"] == "DENY"


def test_a_policy_deny_is_never_opened_by_the_failure_mode() -> None:
    d = decision(Outcome.DENY, Reason("RESIDENCY_VIOLATION", "no", "gpupaas.residency"))
    assert response_for_decision(PLAIN, d, failure_mode="open-non-gpu")["response"]["allowed"] is False

"""The pure rendering functions: an engine result becomes a Decision, and nothing unclear is an allow."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdp.decision import Decision, Outcome, canonical_intent, engine_failure, from_engine_result, input_digest
from pdp.engine import EngineTimeout, EngineUnavailable
from pdp.point import decision_ids, uuid7_text

AT = datetime(2026, 11, 28, tzinfo=UTC)
INTENT = {"kind": "deploy_model", "tenant": "acme-eu"}


def render(result: Any) -> Any:
    return from_engine_result(result, INTENT, decision_id="d1", decided_at=AT, evaluation_ms=1.0)


def test_policy_result_is_rendered_field_by_field() -> None:
    d = render(
        {
            "outcome": "DENY",
            "reasons": [{"code": "RESIDENCY_VIOLATION", "message": "m", "policy": "gpupaas.residency"}],
            "warnings": [{"code": "W", "message": "w", "policy": "p"}],
            "constraints": {"eligible_clusters": ["eu-west"]},
            "obligations": [{"code": "DESTROY_DATA", "description": "x", "params": {}}],
            "bundle_revision": "abc",
            "tenant": "acme-eu",
        }
    )
    assert d.outcome is Outcome.DENY and not d.allowed
    assert d.reason_codes == ["RESIDENCY_VIOLATION"]
    assert d.warnings[0].code == "W"
    assert d.constraints == {"eligible_clusters": ["eu-west"]}
    assert d.bundle_revision == "abc" and d.decision_id == "d1" and d.kind == "deploy_model"
    assert d.to_dict()["decided_at"] == "2026-11-28T00:00:00+00:00"


@pytest.mark.parametrize(
    "result",
    [None, [], "ALLOW", {"outcome": "allow"}, {"outcome": "MAYBE"}, {"reasons": []}, {"outcome": None}],
)
def test_anything_but_a_clear_outcome_is_a_deny(result: Any) -> None:
    d = render(result)
    assert d.outcome is Outcome.DENY
    assert d.reason_codes == ["ENGINE_ERROR"]


def test_a_deny_without_reasons_still_explains_itself() -> None:
    d = render({"outcome": "NEEDS_APPROVAL", "reasons": []})
    assert d.outcome is Outcome.NEEDS_APPROVAL
    assert d.reason_codes == ["POLICY_NO_REASON"]


@pytest.mark.parametrize("error", [EngineUnavailable("down"), EngineTimeout("slow")])
def test_engine_failures_fail_closed_with_their_code(error: Exception) -> None:
    d = engine_failure(error, INTENT, decision_id="d", decided_at=AT, evaluation_ms=3.0)  # type: ignore[arg-type]
    assert d.outcome is Outcome.DENY
    assert d.reasons[0].code == error.code  # type: ignore[attr-defined]
    assert d.reasons[0].policy == "pdp.engine"
    assert d.tenant == "acme-eu"
    assert d.engine_failed


def test_only_the_engine_failing_is_an_engine_failure() -> None:
    engine_reason = {"code": "ENGINE_ERROR", "message": "m", "policy": "pdp.engine"}
    assert not render(
        {"outcome": "DENY", "reasons": [{"code": "X", "message": "m", "policy": "p"}]}
    ).engine_failed
    # Only a DENY: whatever else an answer says, it is the policy's.
    assert not render({"outcome": "NEEDS_APPROVAL", "reasons": [engine_reason]}).engine_failed


def test_a_decision_document_reads_back_as_the_same_decision() -> None:
    d = render(
        {
            "outcome": "ALLOW",
            "warnings": [{"code": "W", "message": "w", "policy": "p"}],
            "constraints": {"node_selector": {"k": "v"}},
            "obligations": [{"code": "O", "description": "x", "params": {}}],
            "bundle_revision": "abc",
        }
    )
    assert Decision.from_dict(d.to_dict()) == d
    # What proto3 leaves out is empty; no outcome is no decision.
    sparse = Decision.from_dict({"outcome": "DENY", "reasons": [{"code": "X"}]})
    assert (sparse.explanation(), sparse.provenance()) == ("[X] ", "(bundle -, decision )")
    with pytest.raises(ValueError, match="no valid outcome"):
        Decision.from_dict({"outcome": "OUTCOME_UNSPECIFIED"})


def test_input_digest_ignores_key_order_but_not_content() -> None:
    a = {"kind": "scale", "tenant": "t", "scale": {"a": 1, "b": 2}}
    b = {"scale": {"b": 2, "a": 1}, "tenant": "t", "kind": "scale"}
    assert input_digest(a) == input_digest(b)
    assert input_digest(a) != input_digest({**a, "tenant": "u"})
    assert input_digest(a).startswith("sha256:")


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), _json_values, max_size=5))
def test_canonical_intent_is_sorted_compact_json_whatever_writes_it(intent: dict[str, object]) -> None:
    # canonical_intent writes with orjson when it gives the same text (speed): digests must not
    # change with the writer, so any document reads back as json.dumps writes it.
    expected = json.dumps(intent, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_intent(intent) == expected


@given(st.integers(min_value=0, max_value=2**48 - 1), st.binary(min_size=16, max_size=16))
def test_decision_ids_are_version_7_uuids_of_their_millisecond(unix_ms: int, raw: bytes) -> None:
    text = uuid7_text(unix_ms, raw)
    parsed = uuid.UUID(text)
    assert str(parsed) == text
    assert parsed.variant == uuid.RFC_4122 and parsed.int >> 76 & 0xF == 7
    assert parsed.int >> 80 == unix_ms
    # the 74 bits that are neither time, version nor variant are raw's
    random_bits = (1 << 80) - 1 & ~(0xF << 76) & ~(0b11 << 62)
    assert parsed.int & random_bits == int.from_bytes(raw, "big") & random_bits


def test_decision_ids_sort_in_the_order_decided() -> None:
    # Time-ordered ids keep the decision log's id indexes growing at their end (random version 4
    # ids put every record on a random page: twice the writer's CPU per record).
    start = datetime(2026, 12, 5, 14, 0, tzinfo=UTC)
    ids = [decision_ids(3, start + timedelta(milliseconds=ms)) for ms in (0, 1, 2, 1000, 86_400_000)]
    firsts = [batch[0] for batch in ids]
    assert firsts == sorted(firsts) and len(set(firsts)) == len(firsts)
    assert all(len(set(batch)) == 3 for batch in ids)
    assert uuid.UUID(ids[0][0]).int >> 80 == int(start.timestamp() * 1000)


@pytest.mark.parametrize("outcome", [[], {}, ["ALLOW"], 1, True])
def test_an_outcome_of_another_type_is_a_deny(outcome: Any) -> None:
    d = render({"outcome": outcome})
    assert d.outcome is Outcome.DENY and d.reason_codes == ["ENGINE_ERROR"]

"""The decision: what the PDP answers, how it is rendered from an engine result, and how every
enforcement point (Kubernetes admission and scheduling, the Kueue admission check; the HTTP and
gRPC fronts that serve the Slurm hook and clients) reads it: one shape, one reading of an engine
failure, one way of showing reasons and provenance to people.

The constructors here are pure functions of their arguments, so they are tested on their own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from pdp.engine.base import EngineError

ENGINE_POLICY = "pdp.engine"


class Outcome(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    NEEDS_APPROVAL = "NEEDS_APPROVAL"


@dataclass(frozen=True)
class Reason:
    code: str
    message: str
    policy: str

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Reason:
        return cls(str(d.get("code", "")), str(d.get("message", "")), str(d.get("policy", "")))

    def shown(self) -> str:
        """The reason as a refusal shows it to people: `[CODE] message`."""
        return f"[{self.code}] {self.message}"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reasons: tuple[Reason, ...]
    bundle_revision: str
    decision_id: str
    decided_at: datetime
    evaluation_ms: float
    kind: str = ""
    tenant: str = ""
    warnings: tuple[Reason, ...] = ()
    constraints: Mapping[str, Any] = field(default_factory=dict)
    obligations: tuple[Mapping[str, Any], ...] = ()

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOW

    @property
    def reason_codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    @property
    def engine_failed(self) -> bool:
        """The engine could not decide (`engine_failure`'s fail-closed DENY), as opposed to the
        policy denying: an enforcement point may answer it otherwise (retry, or admit what asks
        for no GPU), but never as an allow."""
        return self.outcome is Outcome.DENY and any(r.policy == ENGINE_POLICY for r in self.reasons)

    def explanation(self, *more: str) -> str:
        """The reasons as a refusal lists them, `[CODE] message; ...`, then `more` (reasons an
        enforcement point finds elsewhere in the decision)."""
        return "; ".join([*(r.shown() for r in self.reasons), *more])

    def provenance(self) -> str:
        """`(tenant T, bundle R, decision D)`: what a refusal is looked up by in the decision log."""
        parts = [f"tenant {self.tenant}"] if self.tenant else []
        parts += [f"bundle {self.bundle_revision or '-'}", f"decision {self.decision_id}"]
        return "(" + ", ".join(parts) + ")"

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "reasons": [r.__dict__ for r in self.reasons],
            "warnings": [r.__dict__ for r in self.warnings],
            "constraints": dict(self.constraints),
            "obligations": [dict(o) for o in self.obligations],
            "bundle_revision": self.bundle_revision,
            "decision_id": self.decision_id,
            "decided_at": self.decided_at.isoformat(),
            "evaluation_ms": round(self.evaluation_ms, 3),
            "kind": self.kind,
            "tenant": self.tenant,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Decision:
        """A decision document (the shape `to_dict` gives, as the gRPC client reads it) as a
        Decision. Fields the document leaves out are empty, as proto3 leaves empty fields out; a
        document without a valid outcome is a ValueError, never a decision to enforce."""
        outcome = str(doc.get("outcome"))
        if outcome not in Outcome.__members__:
            raise ValueError(f"the decision has no valid outcome: {outcome[:100]}")
        decided_at = doc.get("decided_at")
        return cls(
            outcome=Outcome(outcome),
            reasons=tuple(Reason.from_dict(r) for r in doc.get("reasons") or ()),
            warnings=tuple(Reason.from_dict(r) for r in doc.get("warnings") or ()),
            constraints=doc.get("constraints") or {},
            obligations=tuple(doc.get("obligations") or ()),
            bundle_revision=str(doc.get("bundle_revision") or ""),
            decision_id=str(doc.get("decision_id") or ""),
            # proto3's unset timestamp is the epoch
            decided_at=datetime.fromisoformat(decided_at) if decided_at else datetime.fromtimestamp(0, UTC),
            evaluation_ms=float(doc.get("evaluation_ms") or 0.0),
            kind=str(doc.get("kind") or ""),
            tenant=str(doc.get("tenant") or ""),
        )


def _orjson_writes_as_json(node: Any) -> bool:
    """Whether orjson writes `node` byte for byte as `json.dumps(sort_keys=True, separators=(",",
    ":"), ensure_ascii=False)` does: dicts with string keys, lists, strings, integers, booleans and
    null (floats are written differently: 1e-05 against 1e-5)."""
    # A plain loop over objects, not all() over a generator: this walks every node of every
    # recorded intent, and most values are strings.
    kind = type(node)
    if kind is str or kind is bool or node is None:
        return True
    if kind is int:
        return -(2**63) <= node < 2**64  # type: ignore[no-any-return]
    if kind is dict:
        for key, value in node.items():
            if type(key) is not str:
                return False
            kind = type(value)
            if kind is str or kind is bool or value is None:
                continue
            if not _orjson_writes_as_json(value):
                return False
        return True
    if kind is list:
        return all(_orjson_writes_as_json(value) for value in node)
    return False


def canonical_intent(intent: Mapping[str, Any]) -> str:
    """The intent's canonical JSON: what its digest is taken of (and what the decision log keeps).

    Written by orjson where that gives the very same text (a tenth of the cost, on every decision
    recorded), else by json; `tests/test_decision_render.py` holds the two equal."""
    if type(intent) is dict and _orjson_writes_as_json(intent):
        try:
            return orjson.dumps(intent, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError:  # a lone surrogate in a string: json escapes it
            pass
    return json.dumps(intent, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest_of(canonical: str) -> str:
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def input_digest(intent: Mapping[str, Any]) -> str:
    """A stable digest of an intent: same content, same digest, whatever the key order."""
    return digest_of(canonical_intent(intent))


# An outcome's text to the Outcome: `Outcome.__members__` builds a mapping proxy on every use.
_OUTCOMES: dict[str, Outcome] = {o.value: o for o in Outcome}


def from_engine_result(
    result: Any,
    intent: Mapping[str, Any],
    *,
    decision_id: str,
    decided_at: datetime,
    evaluation_ms: float,
) -> Decision:
    """Render the policy's `gpupaas.decision.result` document as a Decision.

    Anything that is not a well-formed result is a DENY: an outcome the policy did not clearly
    state must never read as an allow.
    """
    tenant = str(intent.get("tenant", ""))
    kind = str(intent.get("kind", ""))
    stated = result.get("outcome") if isinstance(result, Mapping) else None
    outcome = _OUTCOMES.get(stated) if type(stated) is str else None
    if outcome is None:
        return engine_failure(
            EngineError(f"the policy returned no valid outcome: {str(result)[:200]}"),
            intent,
            decision_id=decision_id,
            decided_at=decided_at,
            evaluation_ms=evaluation_ms,
        )
    reasons = tuple(Reason.from_dict(r) for r in result.get("reasons") or ())
    if outcome is not Outcome.ALLOW and not reasons:
        reasons = (Reason("POLICY_NO_REASON", f"the policy answered {outcome} without a reason", ""),)
    return Decision(
        outcome=outcome,
        reasons=reasons,
        warnings=tuple(Reason.from_dict(r) for r in result.get("warnings") or ()),
        constraints=result.get("constraints") or {},
        obligations=tuple(result.get("obligations") or ()),
        bundle_revision=str(result.get("bundle_revision", "")),
        decision_id=decision_id,
        decided_at=decided_at,
        evaluation_ms=evaluation_ms,
        kind=kind,
        tenant=str(result.get("tenant") or tenant),
    )


def engine_failure(
    error: EngineError,
    intent: Mapping[str, Any],
    *,
    decision_id: str,
    decided_at: datetime,
    evaluation_ms: float,
    bundle_revision: str = "",
) -> Decision:
    """The fail-closed decision when the engine could not decide: DENY with the engine's code."""
    return Decision(
        outcome=Outcome.DENY,
        reasons=(Reason(error.code, f"policy engine could not decide: {error}", ENGINE_POLICY),),
        bundle_revision=bundle_revision,
        decision_id=decision_id,
        decided_at=decided_at,
        evaluation_ms=evaluation_ms,
        kind=str(intent.get("kind", "")),
        tenant=str(intent.get("tenant", "")),
    )

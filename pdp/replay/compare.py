"""What changed between a recorded decision and the candidate's, and the report of many.

A change entry (`Change.as_json`) is the unit both replay and the shadow evaluator write; the
report groups entries by tenant, intent kind and reason code and counts each kind of change.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ALLOW_TO_DENY = "allow-to-deny"
DENY_TO_ALLOW = "deny-to-allow"
OUTCOME = "outcome"  # any other outcome change (to or from NEEDS_APPROVAL)
REASONS = "reasons"  # the set of reason codes changed
CONSTRAINTS = "constraints"
KINDS = (ALLOW_TO_DENY, DENY_TO_ALLOW, OUTCOME, REASONS, CONSTRAINTS)


@dataclass(frozen=True)
class Side:
    """One decision as compared: outcome, reason codes, constraints, revision."""

    outcome: str
    reasons: tuple[str, ...]
    constraints: Mapping[str, Any] | None  # None: not recorded (a record from before constraints)
    revision: str

    @classmethod
    def of(cls, outcome: str, reasons: Iterable[Mapping[str, Any]], constraints: Any, revision: str) -> Side:
        return cls(outcome, tuple(sorted({str(r.get("code", "")) for r in reasons})), constraints, revision)

    def as_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "constraints": self.constraints,
            "revision": self.revision,
        }


def changes_between(recorded: Side, candidate: Side) -> list[str]:
    found = []
    if recorded.outcome != candidate.outcome:
        if recorded.outcome == "ALLOW" and candidate.outcome == "DENY":
            found.append(ALLOW_TO_DENY)
        elif recorded.outcome == "DENY" and candidate.outcome == "ALLOW":
            found.append(DENY_TO_ALLOW)
        else:
            found.append(OUTCOME)
    if recorded.reasons != candidate.reasons:
        found.append(REASONS)
    # A record without constraints (older than them) cannot show a constraint change.
    if recorded.constraints is not None and dict(recorded.constraints) != dict(candidate.constraints or {}):
        found.append(CONSTRAINTS)
    return found


@dataclass(frozen=True)
class Change:
    decision_id: str
    decided_at: str
    tenant: str
    kind: str
    changes: tuple[str, ...]
    recorded: Side
    candidate: Side

    @property
    def reason_codes(self) -> list[str]:
        """The codes a group is keyed by: those that appeared or disappeared (else all of them)."""
        moved = sorted(set(self.recorded.reasons) ^ set(self.candidate.reasons))
        return moved or sorted(set(self.recorded.reasons) | set(self.candidate.reasons)) or ["-"]

    def as_json(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "decided_at": self.decided_at,
            "tenant": self.tenant,
            "kind": self.kind,
            "changes": list(self.changes),
            "recorded": self.recorded.as_json(),
            "candidate": self.candidate.as_json(),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Change:
        def side(d: Mapping[str, Any]) -> Side:
            return Side(
                str(d["outcome"]), tuple(d["reasons"]), d.get("constraints"), str(d.get("revision", ""))
            )

        return cls(
            str(doc["decision_id"]),
            str(doc["decided_at"]),
            str(doc["tenant"]),
            str(doc["kind"]),
            tuple(doc["changes"]),
            side(doc["recorded"]),
            side(doc["candidate"]),
        )


@dataclass
class Report:
    candidate: str = ""
    candidate_revision: str = ""
    selected: int = 0  # records that matched the selection
    replayed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # why records were not replayed
    counts: Counter[str] = field(default_factory=Counter)  # change kind -> decisions
    # (tenant, kind, reason code) -> change kind -> decisions
    groups: dict[tuple[str, str, str], Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    changes: list[Change] = field(default_factory=list)
    keep: int = 1000  # changes listed one by one; the rest are counted only
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return self.counts["changed"]

    def add(self, change: Change) -> None:
        self.counts["changed"] += 1
        for kind in change.changes:
            self.counts[kind] += 1
            for code in change.reason_codes:
                self.groups[(change.tenant, change.kind, code)][kind] += 1
        if len(self.changes) < self.keep:
            self.changes.append(change)

    def failing(self, fail_on: Iterable[str]) -> list[str]:
        """The change kinds of `fail_on` this report holds."""
        return [kind for kind in fail_on if self.counts[kind]]

    def as_json(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate,
            "candidate_revision": self.candidate_revision,
            "selected": self.selected,
            "replayed": self.replayed,
            "skipped": dict(self.skipped),
            "changed": self.changed,
            "counts": {kind: self.counts[kind] for kind in KINDS},
            "groups": [
                {"tenant": t, "kind": k, "reason": r, **{c: n for c, n in sorted(counts.items())}}
                for (t, k, r), counts in sorted(self.groups.items())
            ],
            "changes": [c.as_json() for c in self.changes],
            "changes_listed": len(self.changes),
            "seconds": round(self.seconds, 3),
        }

"""Replays a tenant's audit trail to check the entitlement promises (pure, no worker needed).

Walking the records in order rebuilds the tenant's deployments and entitlements as the store held
them at every record, so each check is against the state at that moment, not at the end:
- every decision that carries usage figures states the usage of that moment (and a scale decision
  the replicas the deployment held then);
- every change that adds GPUs of a class is linked to an ALLOW decision, or to a NEEDS_APPROVAL
  decision applied under an approval that was approved, and leaves the class's usage within the
  entitlement of that moment, or within the total the approval granted;
- every quota change is linked to an ALLOW or an approved NEEDS_APPROVAL decision.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Decisions about a change of the tenant's own resources (re-placements and preemptions carry
# other figures: a re-placement leaves the moved deployment's GPUs out of its usage).
USAGE_KINDS = {
    "deploy_model",
    "scale",
    "update_quotas",
    "change_batch_size",
    "change_sla",
    "request_gpu_sharing",
}


@dataclass
class Ledger:
    entitlements: dict[str, int]
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {state, spec}
    problems: list[str] = field(default_factory=list)
    changes: int = 0  # GPU-adding changes checked
    decisions: int = 0  # decisions whose figures were checked
    granted: int = 0  # GPU-adding changes applied under an approval's grant

    def usage(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for dep in self.deployments.values():
            if dep["state"] == "running":
                spec = dep["spec"]
                cls = str(spec["gpu_class"])
                out[cls] = out.get(cls, 0) + int(spec["gpus_per_replica"]) * int(spec["replicas"])
        return {k: v for k, v in out.items() if v}


def _nonzero(usage: Mapping[str, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in usage.items() if int(v)}


def replay(records: Iterable[Mapping[str, Any]], entitlements: Mapping[str, int]) -> Ledger:
    """Check the trail of one tenant, from its onboarding on (`entitlements`: those it was
    onboarded with)."""
    records = list(records)
    ledger = Ledger(dict(entitlements))
    decisions = {r["decision_id"]: r for r in records if r["event"] == "decision" and r["decision_id"]}
    approved = {(r["workflow_id"], r["decision_id"]) for r in records if r["event"] == "approval.approved"}

    def allowed(r: Mapping[str, Any], what: str) -> dict[str, Any] | None:
        """The grant a change was applied under ({} for an ALLOW), or None (a problem, noted)."""
        decision = decisions.get(r["decision_id"])
        if decision is None:
            ledger.problems.append(f"record {r['seq']} ({what}) has no decision record {r['decision_id']!r}")
            return None
        outcome = decision["detail"]["outcome"]
        if outcome == "ALLOW":
            return {}
        grant = decision["detail"].get("grant")
        if outcome == "NEEDS_APPROVAL" and grant and (r["workflow_id"], grant["decision_id"]) in approved:
            return dict(grant)
        ledger.problems.append(
            f"record {r['seq']} ({what}) applied under decision {r['decision_id']} ({outcome}) "
            f"without an approved grant: {grant}"
        )
        return None

    for r in records:
        detail = r["detail"]
        if r["event"] == "decision" and detail.get("kind") in USAGE_KINDS and "usage" in detail:
            if "replacement_of" in detail:
                continue
            ledger.decisions += 1
            if _nonzero(detail["usage"]) != ledger.usage():
                ledger.problems.append(
                    f"decision {r['decision_id']} (record {r['seq']}, {detail['kind']}) states usage "
                    f"{_nonzero(detail['usage'])}; the store held {ledger.usage()}"
                )
            payload = detail.get("payload", {})
            if detail["kind"] == "scale":
                dep = ledger.deployments.get(str(payload.get("deployment")))
                held = int(dep["spec"]["replicas"]) if dep and dep["state"] == "running" else 0
                if int(payload.get("current_replicas", -1)) != held:
                    ledger.problems.append(
                        f"decision {r['decision_id']} (record {r['seq']}) scales from "
                        f"{payload.get('current_replicas')} replicas; the deployment held {held}"
                    )
        elif r["event"] == "deployment.transition":
            name = str(detail["deployment"])
            before = ledger.usage()
            ledger.deployments[name] = {"state": detail["to"], "spec": dict(detail["spec"])}
            after = ledger.usage()
            grown = [c for c, n in after.items() if n > before.get(c, 0)]
            if not grown:
                continue
            ledger.changes += 1
            grant = allowed(r, f"{name} -> {detail['to']}")
            ledger.granted += bool(grant)
            for cls in grown:
                limit = max(ledger.entitlements.get(cls, 0), int((grant or {}).get("total", 0)))
                if after[cls] > limit:
                    ledger.problems.append(
                        f"record {r['seq']}: {name} -> {detail['to']} brings {cls} to {after[cls]} GPUs, "
                        f"above the entitlement of {ledger.entitlements.get(cls, 0)} and any grant ({grant})"
                    )
        elif r["event"] == "tenant.policy_updated" and "entitlements" in detail:
            allowed(r, "quota change")
            ledger.entitlements = {str(k): int(v) for k, v in detail["entitlements"].items()}
    return ledger

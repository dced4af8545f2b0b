"""Approvals, and the decision a request shows while it runs.

A NEEDS_APPROVAL decision waits for a human in the request's own workflow (`DBOS.recv`), never
inside the tenant's serialization, so a pending approval holds nothing else of the tenant up. The
approval's id is the request's workflow id; when a request needs approval again (usage changed
beyond what the first approval granted), the same approval opens again with the new decision, and
an answer names the decision it answers (answers to an earlier round are dropped). After one
timeout the approval is escalated; after the second it expires as rejected. Offboarding
supersedes every open approval of its tenant (`supersede`), and a tenant being offboarded opens
none.

The request's latest decision is a DBOS event on its workflow (`publish`): the API answers with it
and `GET /v1/workflows/{id}` (hence `pdp lifecycle follow`) shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbos import DBOS

from pdp.lifecycle.runtime import current
from pdp.lifecycle.workflows.steps import key, record_step, request_id

APPROVAL_TOPIC = "approval"
DECISION_EVENT = "decision"
# What an approval can end as, besides approved.
REFUSED = ("rejected", "expired", "superseded")


def summary(status: str, decision: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A request's decision as the API shows it."""
    out: dict[str, Any] = {"status": status}
    if decision:
        out.update(
            outcome=decision.get("outcome"),
            reason_codes=[r["code"] for r in decision.get("reasons", [])],
            reasons=decision.get("reasons", []),
            decision_id=decision.get("decision_id"),
            bundle_revision=decision.get("bundle_revision"),
        )
        if "usage" in decision:
            out["usage"] = decision["usage"]
    return {**out, **extra}


def publish(status: str, decision: Mapping[str, Any] | None = None, **extra: Any) -> None:
    """Set the request's decision event (called by the request's workflow)."""
    DBOS.set_event(DECISION_EVENT, summary(status, decision, **extra))


@DBOS.step()
def open_approval_step(tenant: str, kind: str, decision: dict[str, Any], grant: dict[str, Any]) -> bool:
    """Open (or open again, for a new decision) the request's approval; False when the tenant is
    being offboarded."""
    return current().store.open_approval(request_id(), tenant, kind, decision, grant)


@DBOS.step()
def resolve_approval_step(status: str, by: str, decision: dict[str, Any]) -> None:
    current().store.set_approval(
        request_id(), status, by, decision, event_key=f"{key()}:approval.{status}:{decision['decision_id']}"
    )


def _answer(decision: Mapping[str, Any], timeout: float) -> dict[str, Any] | None:
    """The next answer to this decision's approval, or None at the timeout."""
    while True:
        msg = DBOS.recv(APPROVAL_TOPIC, timeout_seconds=timeout)
        if not isinstance(msg, dict):
            return None
        answers = msg.get("decision_id")
        if msg.get("superseded_by") or not answers or answers == decision["decision_id"]:
            return msg
        # an answer to an earlier round of this approval, sent after it was resolved


def await_approval(
    tenant: str, kind: str, decision: dict[str, Any], grant: dict[str, Any] | None = None
) -> str:
    """Wait for a human's answer to `decision`: "approved", or one of REFUSED."""
    if not open_approval_step(tenant, kind, decision, grant or {}):
        return "superseded"
    publish("awaiting_approval", decision, approval_id=request_id())
    timeout = current().settings.approval_timeout
    for round_ in (1, 2):
        msg = _answer(decision, timeout)
        if msg is not None:
            if msg.get("superseded_by"):
                resolve_approval_step("superseded", str(msg["superseded_by"]), decision)
                return "superseded"
            status = "approved" if msg.get("approved") else "rejected"
            resolve_approval_step(status, str(msg.get("by", "")), decision)
            return status
        if round_ == 1:
            resolve_approval_step("escalated", "system", decision)
    resolve_approval_step("expired", "system", decision)
    return "expired"


@DBOS.step()
def open_approvals_step(tenant: str, but: str) -> list[str]:
    return [a["id"] for a in current().store.approvals(tenant) if a["id"] != but]


def supersede(tenant: str, by: str, decision: dict[str, Any]) -> list[str]:
    """Answer every open approval of the tenant (but `by`'s own) as superseded by `by` (allowed
    by `decision`); audited here (`requests.superseded`) and by each request (`approval.superseded`)."""
    ids = open_approvals_step(tenant, by)
    for approval in ids:
        DBOS.send(approval, {"superseded_by": by}, APPROVAL_TOPIC)
    record_step(tenant, "requests.superseded", {"approvals": ids}, decision)
    return ids

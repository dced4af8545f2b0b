"""Gated rollout of a new policy revision: build, replay report, approval when decisions flip,
activation, watch, rollback.

`rollout_workflow` copies the candidate policy tree under the state folder, replays the decision
log on it (pdp/lifecycle/services/rollouts.py), and when the report shows a decision that would flip
(allow-to-deny, deny-to-allow, another outcome change) or give other reasons, waits for an admin's
approval (its id is the rollout's; POST /v1/approvals/{id}) with the report attached; a report
without such changes proceeds at once. Activation makes the candidate the lifecycle's active tree
(pdp/lifecycle/services/policy_trees.py) and rebuilds the bundle; it refuses when the active tree is no
longer the one the report was made against (another rollout activated meanwhile). With a watch
window, the previous revision then shadows the new one (pdp/lifecycle/services/rollout_shadow.py) and a
disagreement rate over the threshold rolls back.

`rollback_workflow` (one per rollout, workflow id `<rollout>:rollback`) makes the tree that was
active before the rollout active again: on an admin's request, or started by the watch. Every step
is an audit record (tenant "", the platform's) naming both revisions. The rollout's progress is
its `rollout` event (`GET /v1/policy/rollouts/{id}`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dbos import DBOS, SetWorkflowID

from pdp.lifecycle import test_faults
from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import policy_trees, rollout_shadow, rollouts
from pdp.lifecycle.workflows.approvals import APPROVAL_TOPIC
from pdp.opa.binary import PROJECT_ROOT
from pdp.replay.candidate import CandidateError

ROLLOUT_EVENT = "rollout"
# The phases of a rollout whose candidate is active (a rollback applies).
ACTIVATED = ("watching", "active")
# Seconds between two looks at the shadow's disagreement rate while watching.
WATCH_POLL = 1.0


def _publish(state: dict[str, Any], phase: str, **extra: Any) -> dict[str, Any]:
    state.update(phase=phase, **extra)
    DBOS.set_event(ROLLOUT_EVENT, dict(state))
    return state


def _pointer(tree: str, found: str, rollout: str, revision: str) -> dict[str, Any]:
    return {"path": tree, "digest": found, "rollout": rollout, "revision": revision}


@DBOS.step()
def rollout_build_step(spec: dict[str, Any], actor: str) -> dict[str, Any]:
    """The candidate copied under the state folder, and the tree active now (to roll back to)."""
    rt = current()
    rollout = str(DBOS.workflow_id)
    before = rt.policy.policies
    previous = {"path": str(before), "digest": policy_trees.digest(before), "revision": rt.policy.revision}
    try:
        copy, found, description = rollouts.candidate_tree(
            str(spec["candidate"]), Path(spec.get("repo") or PROJECT_ROOT), rt.settings.state
        )
    except CandidateError as exc:
        rollouts.record(
            rt, f"{rollout}:failed", "policy.rollout.failed", rollout=rollout, revision=previous["revision"],
            from_revision=previous["revision"], to_revision="", candidate=spec["candidate"], error=str(exc),
        )  # fmt: skip
        return {"status": "failed", "error": str(exc), "previous": previous}
    # The tree active now, kept too: a rollback must not depend on --policies staying as it was.
    kept, _ = policy_trees.snapshot(before, rt.settings.state)
    previous["kept"] = str(kept)
    candidate = {"path": str(copy), "digest": found, "description": description}
    rollouts.record(
        rt, f"{rollout}:started", "policy.rollout.started", rollout=rollout, revision=previous["revision"],
        from_revision=previous["revision"], to_revision="", candidate=description, actor=actor,
        candidate_digest=found, previous_digest=previous["digest"],
    )  # fmt: skip
    return {"status": "built", "candidate": candidate, "previous": previous}


@DBOS.step()
def rollout_report_step(built: dict[str, Any]) -> dict[str, Any]:
    rt = current()
    rollout = str(DBOS.workflow_id)
    candidate, previous = built["candidate"], built["previous"]
    try:
        found = rollouts.report(rt, Path(candidate["path"]), candidate["description"])
    except CandidateError as exc:
        rollouts.record(
            rt, f"{rollout}:failed", "policy.rollout.failed", rollout=rollout, revision=previous["revision"],
            from_revision=previous["revision"], to_revision="", error=str(exc),
        )  # fmt: skip
        return {"status": "failed", "error": str(exc)}
    flips = rollouts.flips(found)
    rollouts.record(
        rt, f"{rollout}:reported", "policy.rollout.reported", rollout=rollout, revision=previous["revision"],
        from_revision=previous["revision"], to_revision=found["candidate_revision"], flips=flips,
        report=rollouts.summary(found),
    )  # fmt: skip
    return {"status": "reported", "report": found, "flips": flips}


@DBOS.step()
def rollout_open_approval_step(decision: dict[str, Any]) -> None:
    rollouts.open_approval(current(), str(DBOS.workflow_id), decision)


@DBOS.step()
def rollout_resolve_approval_step(status: str, by: str, comment: str, decision: dict[str, Any]) -> None:
    rt = current()
    rollout = str(DBOS.workflow_id)
    answered = {"decision_id": decision["decision_id"], "bundle_revision": decision["from_revision"]}
    rt.store.set_approval(rollout, status, by, answered, event_key=f"{rollout}:approval.{status}")
    rollouts.record(
        rt, f"{rollout}:approval:{status}", "policy.rollout.approval", rollout=rollout,
        revision=decision["from_revision"], from_revision=decision["from_revision"],
        to_revision=decision["to_revision"], status=status, by=by, comment=comment,
    )  # fmt: skip


def _await_approval(decision: dict[str, Any], state: dict[str, Any]) -> str:
    """The admin's answer: approved, rejected, or expired (after the second timeout; escalated
    after the first)."""
    rollout_open_approval_step(decision)
    _publish(state, "awaiting_approval", approval_id=str(DBOS.workflow_id))
    timeout = current().settings.approval_timeout
    for round_ in (1, 2):
        while True:
            msg = DBOS.recv(APPROVAL_TOPIC, timeout_seconds=timeout)
            if not isinstance(msg, dict) or msg.get("decision_id") in (None, "", decision["decision_id"]):
                break
        if isinstance(msg, dict):
            status = "approved" if msg.get("approved") else "rejected"
            by, comment = str(msg.get("by", "")), str(msg.get("comment", ""))
            rollout_resolve_approval_step(status, by, comment, decision)
            return status
        if round_ == 1:
            rollout_resolve_approval_step("escalated", "system", "", decision)
    rollout_resolve_approval_step("expired", "system", "", decision)
    return "expired"


@DBOS.step()
def rollout_activate_step(built: dict[str, Any], to_revision: str) -> dict[str, Any]:
    """Make the candidate the active tree and rebuild; refused when the active tree is no longer
    the one the report compared with (a re-run after a crash finds its own candidate: fine)."""
    rt = current()
    rollout = str(DBOS.workflow_id)
    candidate, previous = built["candidate"], built["previous"]
    active = policy_trees.digest(rt.policy.policies)
    if active not in (previous["digest"], candidate["digest"]):
        reason = "the active policies changed since the report (another rollout or rollback activated)"
        rollouts.record(
            rt, f"{rollout}:superseded", "policy.rollout.superseded", rollout=rollout,
            revision=rt.policy.revision, from_revision=previous["revision"], to_revision=to_revision,
            reason=reason,
        )  # fmt: skip
        return {"status": "superseded", "reason": reason}
    policy_trees.set_active(
        rt.settings.state, _pointer(candidate["path"], candidate["digest"], rollout, to_revision)
    )
    test_faults.at_step("rollout:activate")  # tests: kill -9 between the pointer and the rebuild
    try:
        revision = rt.policy.activate(Path(candidate["path"]))
    except Exception:  # not served: a restart must not build it either
        back = _pointer(previous["path"], previous["digest"], rollout, previous["revision"])
        policy_trees.set_active(rt.settings.state, back)
        raise
    rollouts.record(
        rt, f"{rollout}:activated", "policy.rollout.activated", rollout=rollout, revision=revision,
        from_revision=previous["revision"], to_revision=revision, candidate_digest=candidate["digest"],
    )  # fmt: skip
    return {"status": "activated", "revision": revision}


@DBOS.step()
def rollout_watch_step(rollout: str, candidate_digest: str) -> dict[str, Any]:
    """The shadow's figures now, whether the candidate is still active, and the time."""
    rt = current()
    return {
        **rollout_shadow.observed(rollout),
        "active": policy_trees.digest(rt.policy.policies) == candidate_digest,
        "now": time.time(),
    }


@DBOS.step()
def rollout_finish_step(state: dict[str, Any], status: str, **detail: Any) -> None:
    rt = current()
    rollout = str(DBOS.workflow_id)
    rollout_shadow.detach(rt, rollout)
    rollouts.record(
        rt, f"{rollout}:{status}", f"policy.rollout.{status}", rollout=rollout, revision=rt.policy.revision,
        from_revision=state["from_revision"], to_revision=state.get("to_revision", ""), **detail,
    )  # fmt: skip


def _watch(spec: dict[str, Any], built: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """Watch the shadow until the window ends (active), the rate crosses the threshold (rolled
    back here), or an admin rolled back (rolled_back)."""
    rollout = str(DBOS.workflow_id)
    window, threshold = float(spec["watch_seconds"]), spec.get("max_disagreement_rate")
    minimum = int(spec.get("min_shadow_samples") or 1)
    rollout_shadow.attach(current(), rollout, Path(built["previous"]["kept"]))
    start = rollout_watch_step(rollout, built["candidate"]["digest"])
    _publish(state, "watching", shadow=start, watch_until=start["now"] + window)
    while True:
        DBOS.sleep(min(WATCH_POLL, window))
        seen = rollout_watch_step(rollout, built["candidate"]["digest"])
        _publish(state, "watching", shadow=seen)
        if not seen["active"]:
            return _publish(state, "rolled_back", rollback=f"{rollout}:rollback")
        if threshold is not None and seen["samples"] >= minimum and seen["rate"] > float(threshold):
            why = (
                f"shadow disagreement rate {seen['rate']:.3f} over {seen['samples']} decisions is above "
                f"{float(threshold):.3f}"
            )
            with SetWorkflowID(f"{rollout}:rollback"):
                handle = DBOS.start_workflow(rollback_workflow, {"rollout": rollout}, "system", why)
            result = handle.get_result()
            return _publish(state, "rolled_back", rollback=f"{rollout}:rollback", rollback_result=result)
        if seen["now"] >= start["now"] + window:
            return state


@DBOS.workflow()
def rollout_workflow(spec: dict[str, Any], actor: str) -> dict[str, Any]:
    """`spec`: candidate (folder or git ref), repo, watch_seconds, max_disagreement_rate,
    min_shadow_samples (pdp/product/api/rollouts.py checks them)."""
    state: dict[str, Any] = {"candidate": spec["candidate"], "actor": actor}
    _publish(state, "building")
    built = rollout_build_step(spec, actor)
    state["from_revision"] = built["previous"]["revision"]
    if built["status"] == "failed":
        return _publish(state, "failed", error=built["error"])
    state["trees"] = {"candidate": built["candidate"], "previous": built["previous"]}
    _publish(state, "replaying")
    reported = rollout_report_step(built)
    if reported["status"] == "failed":
        return _publish(state, "failed", error=reported["error"])
    found = reported["report"]
    state.update(
        to_revision=found["candidate_revision"], flips=reported["flips"], report=rollouts.summary(found)
    )
    if reported["flips"]:
        decision = {
            "decision_id": f"{DBOS.workflow_id}:report",
            "kind": rollouts.KIND,
            "from_revision": state["from_revision"],
            "to_revision": state["to_revision"],
            "flips": reported["flips"],
            "report": found,
        }
        answer = _await_approval(decision, state)
        state["approval"] = answer
        if answer != "approved":
            rollout_finish_step(state, "rejected", approval=answer)
            return _publish(state, "rejected")
    _publish(state, "activating")
    activated = rollout_activate_step(built, state["to_revision"])
    if activated["status"] != "activated":
        return _publish(state, "superseded", reason=activated["reason"])
    state["to_revision"] = activated["revision"]
    if float(spec.get("watch_seconds") or 0) > 0:
        _watch(spec, built, state)
        # also here, outside a step: a worker that resumed the watch after its last step attached
        # the shadow again
        rollout_shadow.detach(current(), str(DBOS.workflow_id))
        if state["phase"] == "rolled_back":
            rollout_finish_step(state, "ended", outcome="rolled_back")
            return state
    rollout_finish_step(state, "completed")
    return _publish(state, "active")


@DBOS.step()
def rollback_step(rollout: str, state: dict[str, Any], by: str, why: str) -> dict[str, Any]:
    rt = current()
    trees = state["trees"]
    candidate, previous = trees["candidate"], trees["previous"]
    active = policy_trees.digest(rt.policy.policies)
    if active not in (candidate["digest"], previous["digest"]):
        return {
            "status": "refused",
            "reason": "the active policies are no longer this rollout's (a later rollout activated)",
        }
    # The tree as it was configured when it still holds the same policies (same revision, git
    # commit included), else the copy kept when the rollout started.
    original = Path(previous["path"])
    same = original.is_dir() and policy_trees.digest(original) == previous["digest"]
    tree = original if same else Path(previous["kept"])
    policy_trees.set_active(
        rt.settings.state,
        _pointer(str(tree), previous["digest"], f"{rollout}:rollback", previous["revision"]),
    )
    revision = rt.policy.activate(tree)
    rollout_shadow.detach(rt, rollout)
    rollouts.record(
        rt, f"{rollout}:rolled_back", "policy.rollout.rolled_back", rollout=rollout, revision=revision,
        from_revision=state.get("to_revision", ""), to_revision=revision, by=by, why=why,
    )  # fmt: skip
    return {"status": "rolled_back", "from_revision": state.get("to_revision", ""), "revision": revision}


@DBOS.workflow()
def rollback_workflow(ref: dict[str, Any], by: str, why: str) -> dict[str, Any]:
    """Roll rollout `ref["rollout"]` back to the tree active before it."""
    rollout = str(ref["rollout"])
    state = DBOS.get_event(rollout, ROLLOUT_EVENT, timeout_seconds=0)
    if not isinstance(state, dict) or state.get("phase") not in ACTIVATED:
        phase = state.get("phase") if isinstance(state, dict) else "unknown"
        return {"status": "refused", "reason": f"rollout {rollout!r} is {phase}: it has activated nothing"}
    result = rollback_step(rollout, state, by, why)
    DBOS.set_event(ROLLOUT_EVENT, result)
    return result

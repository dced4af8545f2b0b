"""What a policy rollout works with: its candidate tree, the replay report of the decision log on
it, its approval and its audit records (the workflow: pdp/lifecycle/workflows/rollout.py).

The candidate is a policy folder on the worker's machine (or a repository holding `policies/`),
or a git ref of a repository (`git archive`, no checkout), copied under the state folder
(pdp/lifecycle/services/policy_trees.py). The report is `pdp replay`'s (pdp/replay/), on the worker's own
decision log, with the candidate built on the lifecycle's tenants and fleet.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pdp.lifecycle.runtime import Runtime
from pdp.lifecycle.services import policy_trees
from pdp.lifecycle.storage import audit
from pdp.lifecycle.storage.common import now
from pdp.replay.candidate import CandidateError, git_tree, policies_of
from pdp.replay.compare import ALLOW_TO_DENY, DENY_TO_ALLOW, OUTCOME, REASONS
from pdp.schemas.errors import echo

# The changes that need an admin's approval: a decision that flips, or says something else.
# Constraint changes alone (a placement detail) do not.
FLIPS = (ALLOW_TO_DENY, DENY_TO_ALLOW, OUTCOME, REASONS)
KIND = "policy_rollout"
# Changed decisions listed one by one in a report (the rest are counted and grouped).
LISTED = 50
# The package folder every policy tree of the project holds (policies/gpupaas/...).
PACKAGE = "gpupaas"
# The lifecycle audit's tenant field for platform-wide records: no tenant sees them.
PLATFORM = ""
# Linux's limits (limits.h NAME_MAX, and PATH_MAX less its terminating NUL).
NAME_MAX = 255
PATH_MAX = 4095


def name_problem(name: str) -> str | None:
    """What makes `name` (a candidate or repository: a path, or a git ref, which git keeps as a
    file) one no file system takes, or None. Asked of such a name, the OS answers with an error
    (ENAMETOOLONG) rather than "no such folder", which no caller expects."""
    if "\0" in name:
        return "holds a NUL character"
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > PATH_MAX:
        return f"is {size} bytes long; a path takes at most {PATH_MAX}"
    for part in name.split("/"):
        length = len(part.encode("utf-8", "surrogatepass"))
        if length > NAME_MAX:
            return f"names {echo(part)}, {length} bytes long; a file name takes at most {NAME_MAX}"
    return None


def candidate_tree(spec: str, repo: Path, state: Path) -> tuple[Path, str, str]:
    """The candidate named by `spec`, copied under `state`: (its tree, digest, description).
    CandidateError naming `candidate` when it is neither a folder of policies nor a ref of `repo`."""
    path = Path(spec)
    if spec.startswith("-"):
        raise CandidateError(f"candidate {spec!r}: neither a folder nor a git ref (starts with '-')")
    problem = name_problem(spec)
    if problem:
        raise CandidateError(f"candidate {problem}")
    try:
        if path.is_dir():
            tree = policies_of(path)
            if not (tree / PACKAGE).is_dir():  # never a walk of whatever folder was named
                raise CandidateError(f"candidate {spec!r}: not a policy tree (no {PACKAGE}/ package folder)")
            copy, found = policy_trees.snapshot(tree, state)
            return copy, found, f"policies {tree}"
        with tempfile.TemporaryDirectory(prefix="pdp-rollout-") as tmp:
            tree = git_tree(repo, spec, "policies", Path(tmp))
            copy, found = policy_trees.snapshot(tree, state)
            return copy, found, f"git {spec}:policies of {repo}"
    except ValueError as exc:  # CandidateError is one; its messages name the replay's option
        raise CandidateError(str(exc).replace("--candidate ", "candidate ")) from exc
    except OSError as exc:  # a folder it may not read, say: a failed rollout, not a failed workflow
        raise CandidateError(f"candidate {echo(spec)}: {exc.strerror or exc}") from exc


def report(rt: Runtime, tree: Path, description: str) -> dict[str, Any]:
    """The replay report (pdp/replay/compare.py Report.as_json) of the decision log's intents,
    each decided on the active tree and on the candidate `tree` (both built with the lifecycle's
    tenants and fleet) and compared: the log may hold answers of a revision since rolled back,
    which are not what the candidate changes. CandidateError when the candidate does not build."""
    from pdp.oneshot import cached_bundle
    from pdp.replay.run import rebased, replay
    from pdp.replay.source import Selection, recorded

    stack = rt.policy.stack
    settings = stack.settings.replace(policies=tree)
    try:
        bundle, _ = cached_bundle(settings)
    except Exception as exc:  # a Rego error, a contradiction with the tenants: named, never activated
        raise CandidateError(f"candidate {description}: it does not build: {exc}") from exc
    active, _ = cached_bundle(stack.settings)
    if stack.decision_log is not None:
        stack.decision_log.flush()  # the decisions made so far are in the report
    source: Path | str | None = settings.records.url or settings.decision_log
    if source is None or (isinstance(source, Path) and not source.exists()):
        raise CandidateError("the worker keeps no decision log: there is nothing to replay the candidate on")
    now = rebased(recorded(source, Selection()), active)
    return replay(now, bundle, description=description, keep=LISTED).as_json()


def flips(found: Mapping[str, Any]) -> dict[str, int]:
    """The report's changes that need an approval, by kind (empty: none)."""
    return {kind: int(found["counts"][kind]) for kind in FLIPS if found["counts"].get(kind)}


def summary(found: Mapping[str, Any]) -> dict[str, Any]:
    """The report without its list of changed decisions (for the audit trail)."""
    keys = ("candidate_revision", "selected", "replayed", "skipped", "changed", "counts", "groups")
    return {k: found[k] for k in keys if k in found}


def record(rt: Runtime, event_key: str, event: str, *, rollout: str, revision: str, **detail: Any) -> None:
    """One audit record of a rollout (idempotent per key); `detail` names both revisions."""
    rt.store.record(
        event_key,
        event=event,
        tenant=PLATFORM,
        workflow_id=rollout,
        bundle_revision=revision,
        detail=detail,
    )


def open_approval(rt: Runtime, approval_id: str, decision: Mapping[str, Any]) -> None:
    """The rollout's approval (its id is the rollout's), listed by GET /v1/approvals to admins
    with the report in `decision`, and answered by POST /v1/approvals/{id}. Idempotent."""
    decision_id = str(decision["decision_id"])
    with rt.db.write() as conn:
        if conn.execute(sa.text("SELECT 1 FROM lc_approvals WHERE id = :i"), {"i": approval_id}).first():
            return
        conn.execute(
            sa.text(
                "INSERT INTO lc_approvals (id, tenant, kind, status, decision, created_at, updated_at) "
                "VALUES (:i, :t, :k, 'pending', :d, :c, :c)"
            ),
            {"i": approval_id, "t": PLATFORM, "k": KIND, "d": json.dumps(decision), "c": now()},
        )
        audit.append(
            conn,
            f"{approval_id}:approval.requested:{decision_id}",
            event="approval.requested",
            tenant=PLATFORM,
            workflow_id=approval_id,
            decision_id=decision_id,
            bundle_revision=str(decision["from_revision"]),
            detail={
                "kind": KIND,
                "from_revision": decision["from_revision"],
                "to_revision": decision["to_revision"],
                "flips": decision["flips"],
                "report": summary(decision["report"]),
            },
        )

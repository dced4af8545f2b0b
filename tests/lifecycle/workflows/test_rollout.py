"""Gated policy rollout through the real lifecycle worker (OPA sidecar, DBOS, API): a candidate
whose replay report changes nothing activates at once; the worked example's tightened residency
rule waits for an admin's approval with its report attached, activates when approved, and a
rollback brings the previous revision back (decisions after it carry it); the shadow's
disagreement rate rolls back on its own; a worker killed between the active-tree pointer and the
rebuild completes the rollout once; a tenant token is refused everywhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pdp.lifecycle.services import rollouts
from pdp.replay.candidate import CandidateError
from tests.lifecycle.harness import Worker, audit_records
from tests.product.console.web import Session
from tests.replay_fixtures import ROOT, tightened_policies

ACME_DEPLOY = {"deployment": "", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 1}
SETTLED = ("awaiting_approval", "active", "rejected", "failed", "superseded", "rolled_back")


def _comment_only(into: Path, note: str) -> Path:
    """A copy of policies/ whose rules decide exactly as before (a comment added): no flip."""
    shutil.copytree(ROOT / "policies", into, ignore=shutil.ignore_patterns("*_test.rego"))
    lib = into / "gpupaas" / "residency" / "residency.rego"
    lib.write_text(lib.read_text() + f"\n# {note}\n")
    return into


def _deploy(worker: Worker, name: str, replicas: int = 1) -> tuple[int, dict[str, Any]]:
    """acme-eu (eu-only) deploys without naming a cluster: what the tightened rule refuses. (Its
    entitlement is 4 H100: the module deploys 3.)"""
    payload = {**ACME_DEPLOY, "deployment": name, "replicas": replicas}
    with worker.client() as c:
        r = c.post("/v1/tenants/acme-eu/deployments", json=payload)
    body: dict[str, Any] = r.json()
    if r.status_code == 202:
        assert worker.wait_workflow(body["workflow_id"])["output"]["status"] == "applied", body
    return r.status_code, body


def _active(worker: Worker) -> dict[str, Any]:
    with worker.client() as c:
        r = c.get("/v1/policy")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]


def _start(worker: Worker, candidate: Path, **options: Any) -> dict[str, Any]:
    with worker.client() as c:
        r = c.post("/v1/policy/rollouts", json={"candidate": str(candidate), **options})
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


def _wait(worker: Worker, rollout: str, phases: tuple[str, ...], timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with worker.client() as c:
        while True:
            view: dict[str, Any] = c.get(f"/v1/policy/rollouts/{rollout}").json()
            if view.get("phase") in phases:
                return view
            assert time.monotonic() < deadline, f"{rollout} still {view}:\n{worker.log()}"
            time.sleep(0.2)


def _cli(worker: Worker, *args: str) -> subprocess.CompletedProcess[str]:
    """`pdp lifecycle rollout ...` against the worker, with the admin token."""
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", "lifecycle", "rollout", *args, "--url", worker.url],
        env={**os.environ, "PDP_LIFECYCLE_TOKEN": worker.admin_token},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _trail(worker: Worker, rollout: str) -> list[dict[str, Any]]:
    with worker.client() as c:
        records = audit_records(c.get("/v1/audit").text)
    return [r for r in records if r["workflow_id"] == rollout]


def _revisions_since(worker: Worker, since: str, count: int, timeout: float = 30) -> list[str]:
    """The bundle revisions of acme-eu's decisions recorded since `since` (at least `count`)."""
    deadline = time.monotonic() + timeout
    with worker.client() as c:
        while True:
            found = c.get("/v1/tenants/acme-eu/decisions", params={"since": since, "limit": 1000}).json()
            if len(found) >= count:
                return [str(d["bundle_revision"]) for d in found]
            assert time.monotonic() < deadline, found
            time.sleep(0.2)


def test_a_tenant_token_is_refused(worker: Worker) -> None:
    with worker.client() as c:
        r = c.post("/v1/tenants/globex/tokens", json={})
        assert r.status_code == 201, r.text
        tenant_token = r.json()["token"]
    with worker.client(tenant_token) as c:
        assert c.get("/v1/whoami").json()["role"] == "tenant"
        calls = [
            c.post("/v1/policy/rollouts", json={"candidate": str(ROOT / "policies")}),
            c.get("/v1/policy"),
            c.get("/v1/policy/rollouts/rollout-0"),
            c.post("/v1/policy/rollouts/rollout-0/rollback", json={}),
        ]
    assert [r.status_code for r in calls] == [403, 403, 403, 403], [r.text for r in calls]
    assert all("admin" in r.json()["detail"] for r in calls)


@pytest.fixture(scope="module")
def seeded(worker: Worker) -> None:
    """The decision log holds acme-eu's deployment without a cluster, allowed (twice: the API's
    check and the workflow's decision)."""
    assert _deploy(worker, "seed")[0] == 202


def test_a_candidate_without_flips_activates_without_approval(
    worker: Worker, seeded: None, tmp_path: Path
) -> None:
    before = _active(worker)
    view = _start(worker, _comment_only(tmp_path / "policies", "reworded, same rules"))
    view = _wait(worker, view["rollout_id"], SETTLED)
    rollout = view["rollout_id"]
    assert view["phase"] == "active", view
    assert view["flips"] == {} and view["report"]["replayed"] >= 2, view
    assert view["from_revision"] == before["revision"] != view["to_revision"]
    with worker.client() as c:
        assert all(a["id"] != rollout for a in c.get("/v1/approvals", params={"all": "true"}).json())
    assert _active(worker)["revision"] == view["to_revision"]
    shown = _cli(worker, "status", rollout)
    assert shown.returncode == 0 and '"phase": "active"' in shown.stdout, shown.stderr
    assert view["to_revision"] in _cli(worker, "active").stdout
    since = datetime.now(UTC).isoformat()
    assert _deploy(worker, "nf-after")[0] == 202
    assert set(_revisions_since(worker, since, 2)) == {view["to_revision"]}
    trail = _trail(worker, rollout)
    assert [r["event"] for r in trail] == [
        "policy.rollout.started",
        "policy.rollout.reported",
        "policy.rollout.activated",
        "policy.rollout.completed",
    ]
    for record in trail[1:]:
        assert record["detail"]["from_revision"] == before["revision"], record
        assert record["detail"]["to_revision"] == view["to_revision"], record


def test_a_tightened_rule_waits_for_approval_then_rolls_back(
    worker: Worker, seeded: None, tmp_path: Path
) -> None:
    previous = _active(worker)["revision"]
    view = _start(worker, tightened_policies(tmp_path / "tightened"))
    rollout = view["rollout_id"]
    view = _wait(worker, rollout, SETTLED)
    assert view["phase"] == "awaiting_approval" and view["approval_id"] == rollout, view
    assert view["flips"]["allow-to-deny"] >= 1 and "deny-to-allow" not in view["flips"], view
    assert _active(worker)["revision"] == previous  # nothing activated while it waits

    with worker.client() as c:
        [approval] = [a for a in c.get("/v1/approvals").json() if a["id"] == rollout]
        tenant_token = c.post("/v1/tenants/acme-eu/tokens", json={}).json()["token"]
    with worker.client(tenant_token) as c:
        assert all(a["id"] != rollout for a in c.get("/v1/approvals").json())
    report = approval["decision"]["report"]
    assert approval["kind"] == "policy_rollout" and approval["decision"]["from_revision"] == previous
    flipped = [ch for ch in report["changes"] if "allow-to-deny" in ch["changes"]]
    assert flipped and {(ch["tenant"], ch["kind"]) for ch in flipped} == {("acme-eu", "deploy_model")}
    assert all(
        "RESIDENCY_CLUSTER_REQUIRED" in ch["candidate"]["reasons"] and ch["recorded"]["outcome"] == "ALLOW"
        for ch in flipped
    )
    assert {g["reason"] for g in report["groups"]} == {"RESIDENCY_CLUSTER_REQUIRED"}
    console = Session(worker)  # the admin's approvals queue in the web console shows it
    try:
        assert console.login("admin", worker.admin_token).status_code == 303
        page = console.get("/console/admin/approvals")
    finally:
        console.close()
    assert page.status_code == 200 and f"Rollout <code>{rollout}</code>" in page.text, page.text
    assert f"Policy rollout {previous} to {view['to_revision']}" in page.text and "allow-to-deny" in page.text

    worker.approve(rollout)
    view = _wait(worker, rollout, ("active", "failed", "superseded"))
    assert view["phase"] == "active", view
    tightened = view["to_revision"]
    assert _active(worker)["revision"] == tightened != previous
    status, body = _deploy(worker, "tr-refused")
    assert status == 403 and "RESIDENCY_CLUSTER_REQUIRED" in body["detail"]["reason_codes"], body
    assert body["detail"]["bundle_revision"] == tightened

    with worker.client() as c:
        r = c.post(f"/v1/policy/rollouts/{rollout}/rollback", json={"reason": "acme-eu must be told first"})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "rolled_back" and r.json()["revision"] == previous, r.json()
    assert _active(worker)["revision"] == previous
    since = datetime.now(UTC).isoformat()
    assert _deploy(worker, "tr-after")[0] == 202  # allowed again
    assert set(_revisions_since(worker, since, 2)) == {previous}
    with worker.client() as c:  # once: a second request answers with the same rollback
        again = c.post(f"/v1/policy/rollouts/{rollout}/rollback", json={})
    assert again.status_code == 202 and again.json()["revision"] == previous, again.text

    trail = _trail(worker, rollout)
    events = [r["event"] for r in trail]
    assert events == [
        "policy.rollout.started",
        "policy.rollout.reported",
        "approval.requested",
        "approval.approved",
        "policy.rollout.approval",
        "policy.rollout.activated",
        "policy.rollout.completed",
        "policy.rollout.rolled_back",
    ], events
    [back] = [r for r in trail if r["event"] == "policy.rollout.rolled_back"]
    assert back["detail"]["from_revision"] == tightened and back["detail"]["to_revision"] == previous
    assert back["detail"]["why"] == "acme-eu must be told first" and back["bundle_revision"] == previous


def test_a_rejected_or_broken_candidate_activates_nothing(
    worker: Worker, seeded: None, tmp_path: Path
) -> None:
    before = _active(worker)["revision"]
    started = _cli(worker, "start", str(tightened_policies(tmp_path / "tightened")), "--wait")
    assert started.returncode == 0 and " awaiting_approval " in started.stdout, started
    rollout = started.stdout.split(":")[0]
    assert "allow-to-deny" in started.stdout and f"approval {rollout}" in started.stdout
    worker.approve(rollout, approved=False)
    view = _wait(worker, rollout, ("rejected", "active"))
    assert view["phase"] == "rejected" and view["approval"] == "rejected", view
    assert _active(worker)["revision"] == before
    events = [r["event"] for r in _trail(worker, rollout)]
    assert events[-3:] == ["approval.rejected", "policy.rollout.approval", "policy.rollout.rejected"], events

    broken = _comment_only(tmp_path / "broken", "x")
    rule = broken / "gpupaas" / "residency" / "residency.rego"
    rule.write_text(rule.read_text() + "\ndeny contains x if {\n")
    view = _wait(worker, _start(worker, broken)["rollout_id"], SETTLED)
    assert view["phase"] == "failed" and "does not build" in view["error"], view
    missing = _wait(worker, _start(worker, tmp_path / "nowhere")["rollout_id"], SETTLED)
    assert missing["phase"] == "failed" and "not a bundle file, a folder, or a git ref" in missing["error"]
    assert _active(worker)["revision"] == before


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        ("x" * 300, "300 bytes long; a file name takes at most 255"),
        (f"/srv/{'p' * 256}/policies", "256 bytes long; a file name takes at most 255"),
        ("/srv/" + "p/" * 2100, "4205 bytes long; a path takes at most 4095"),
        ("policies\0", "holds a NUL character"),
    ],
)
def test_a_candidate_no_file_system_could_name_is_a_422_at_once(
    worker: Worker, candidate: str, problem: str
) -> None:
    """A 300-character candidate was accepted, the answer came after decision_wait (10 s) and the
    workflow ended in ERROR (file name too long)."""
    started = time.monotonic()
    with worker.client() as c:
        r = c.post("/v1/policy/rollouts", json={"candidate": candidate})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("candidate: ") and problem in detail, detail
    assert time.monotonic() - started < 5


def test_the_rollout_step_fails_such_a_candidate_by_name(tmp_path: Path) -> None:
    """Behind the API too: an OSError (file name too long) raised out of the step, and the
    workflow ended in ERROR rather than as a failed rollout."""
    with pytest.raises(CandidateError, match="300 bytes long; a file name takes at most 255"):
        rollouts.candidate_tree("x" * 300, ROOT, tmp_path)


def test_the_shadow_disagreement_rate_rolls_back(worker: Worker, seeded: None, tmp_path: Path) -> None:
    previous = _active(worker)["revision"]
    view = _start(
        worker,
        tightened_policies(tmp_path / "tightened"),
        watch_seconds=120,
        max_disagreement_rate=0.5,
        min_shadow_samples=1,
    )
    rollout = view["rollout_id"]
    assert _wait(worker, rollout, SETTLED)["phase"] == "awaiting_approval"
    worker.approve(rollout)
    view = _wait(worker, rollout, ("watching", "active", "failed", "superseded"))
    assert view["phase"] == "watching", view
    # Decided on the new revision (refused), on the previous one in the shadow (allowed).
    status, _ = _deploy(worker, "sh-refused")
    assert status == 403
    view = _wait(worker, rollout, ("rolled_back", "active"))
    assert view["phase"] == "rolled_back", view
    assert view["shadow"]["disagree"] >= 1 and view["rollback"]["result"]["revision"] == previous, view
    assert _active(worker)["revision"] == previous
    [back] = [r for r in _trail(worker, rollout) if r["event"] == "policy.rollout.rolled_back"]
    assert back["detail"]["by"] == "system"
    assert "shadow disagreement rate" in back["detail"]["why"]
    # the shadow log, in `pdp replay`'s change format: live (the new revision) refused, the
    # shadow (the previous one) allowed
    log = worker.root / "state" / "lifecycle" / "rollouts" / rollout / "shadow.jsonl"
    assert '"changes":["deny-to-allow","reasons"]' in log.read_text()


def test_a_git_ref_is_a_candidate(worker: Worker, tmp_path: Path) -> None:
    repo = tmp_path / "policy-repo"
    _comment_only(repo / "policies", "from git")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "reworded"], ["tag", "v2"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    before = _active(worker)["revision"]
    view = _wait(worker, _start(worker, Path("v2"), repo=str(repo))["rollout_id"], SETTLED)
    assert view["phase"] == "active" and view["from_revision"] == before != view["to_revision"], view
    [started] = [r for r in _trail(worker, view["rollout_id"]) if r["event"] == "policy.rollout.started"]
    assert started["detail"]["candidate"] == f"git v2:policies of {repo}"
    assert _active(worker)["revision"] == view["to_revision"]


def test_a_worker_killed_mid_rollout_completes_it_once(worker: Worker, tmp_path: Path) -> None:
    previous = _active(worker)["revision"]
    worker.kill9()
    worker.start(env={"PDP_LIFECYCLE_PAUSE_AT": "rollout:activate"})
    view = _start(worker, _comment_only(tmp_path / "policies", "reworded again"))
    rollout = view["rollout_id"]
    assert worker.wait_paused() == "rollout:activate"
    worker.kill9()  # the active-tree pointer names the candidate; OPA serves the previous bundle
    worker.start()

    assert worker.wait_workflow(rollout, timeout=180)["status"] == "SUCCESS"
    view = _wait(worker, rollout, SETTLED)
    assert view["phase"] == "active", view
    assert _active(worker)["revision"] == view["to_revision"] != previous
    events = Counter(r["event"] for r in _trail(worker, rollout))
    assert events == {
        "policy.rollout.started": 1,
        "policy.rollout.reported": 1,
        "policy.rollout.activated": 1,
        "policy.rollout.completed": 1,
    }, events
    since = datetime.now(UTC).isoformat()
    status, body = _deploy(worker, "kill-after", replicas=50)  # over the entitlement: refused
    assert status == 403 and body["detail"]["bundle_revision"] == view["to_revision"], body
    assert set(_revisions_since(worker, since, 1)) == {view["to_revision"]}
    with worker.client() as c:
        verified = c.get("/v1/audit/verify").json()
    assert verified["ok"], verified

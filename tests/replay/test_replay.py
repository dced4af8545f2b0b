"""`pdp replay`: recorded decisions (real ones, of the example intents) decided again on a
candidate policy, its report, and its CI gate."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pdp import decision as render
from pdp.engine.base import EngineTimeout
from pdp.records.log import DecisionLog
from pdp.replay.compare import ALLOW_TO_DENY
from pdp.replay.run import replay
from pdp.replay.source import ENGINE_FAILED, NOT_KEPT, TOO_LARGE, Selection, recorded
from tests.replay_fixtures import ROOT, baseline, example_intents, record_decisions, tightened_policies

ROUNDS = 3
INTENT = example_intents()[0]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("replay")
    state = root / "state"
    decided = record_decisions(root / "decisions.sqlite", baseline(state), ROUNDS)
    yield {
        "root": root,
        "state": state,
        "log": root / "decisions.sqlite",
        "decided": decided,
        "tightened": tightened_policies(root / "tightened"),
    }


def _cli(world: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", "replay", "--state", str(world["state"]),
         "--keys", str(world["state"] / "keys"), "--records", str(world["log"]), *args],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip


def _expected_flips(decided: list[dict[str, Any]], rounds: int = ROUNDS) -> list[dict[str, Any]]:
    """What the tightened rule refuses: ALLOWed deployments of jurisdiction-bound tenants that
    named no cluster."""
    intents = example_intents() * rounds
    return [
        d
        for d, i in zip(decided, intents, strict=True)
        if d["outcome"] == "ALLOW"
        and i["kind"] == "deploy_model"
        and "cluster" not in i["deploy_model"]
        and d["tenant"] != "globex"
    ]


def test_an_unchanged_policy_changes_nothing(world: dict[str, Any]) -> None:
    done = _cli(world, "--candidate", str(ROOT / "policies"), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["selected"] == report["replayed"] == len(world["decided"])
    assert report["changed"] == 0 and report["changes"] == []


def test_a_tightened_residency_rule_is_reported_and_fails_the_gate(world: dict[str, Any]) -> None:
    flips = _expected_flips(world["decided"])
    assert flips, "the example intents hold an allowed deployment without a cluster"
    done = _cli(world, "--candidate", str(world["tightened"]), "--json", "--fail-on", "allow-to-deny")
    assert done.returncode == 3, done.stderr
    assert f"FAIL --fail-on: allow-to-deny {len(flips)}" in done.stderr
    report = json.loads(done.stdout)
    assert report["counts"]["allow-to-deny"] == len(flips)
    assert report["counts"]["deny-to-allow"] == 0
    assert {c["decision_id"] for c in report["changes"]} == {d["decision_id"] for d in flips}
    for change in report["changes"]:
        assert change["recorded"]["outcome"] == "ALLOW" and change["candidate"]["outcome"] == "DENY"
        assert "RESIDENCY_CLUSTER_REQUIRED" in change["candidate"]["reasons"]
        assert change["recorded"]["revision"] != change["candidate"]["revision"]
    groups = {(g["tenant"], g["kind"], g["reason"]): g for g in report["groups"]}
    assert groups[("acme-eu", "deploy_model", "RESIDENCY_CLUSTER_REQUIRED")][ALLOW_TO_DENY] == len(flips)
    # The gate passes when only other kinds of change are refused.
    passing = _cli(world, "--candidate", str(world["tightened"]), "--fail-on", "deny-to-allow")
    assert passing.returncode == 0, passing.stderr
    assert "RESIDENCY_CLUSTER_REQUIRED" in passing.stdout and "ALLOW -> DENY" in passing.stdout
    assert "allow-to-deny " + str(len(flips)) in passing.stdout


def test_selection_by_tenant_and_kind(world: dict[str, Any]) -> None:
    done = _cli(world, "--candidate", str(world["tightened"]), "--json", "--tenant", "globex")
    report = json.loads(done.stdout)
    assert report["selected"] == sum(1 for d in world["decided"] if d["tenant"] == "globex")
    assert report["changed"] == 0
    done = _cli(world, "--candidate", str(world["tightened"]), "--json", "--kind", "offboard_tenant")
    report = json.loads(done.stdout)
    assert 0 < report["selected"] < len(world["decided"]) and report["changed"] == 0


def test_a_git_ref_and_a_bundle_file_are_candidates(world: dict[str, Any], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "policies").parent.mkdir()
    tightened_policies(repo / "policies")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "tightened")
    done = _cli(world, "--candidate", "HEAD", "--repo", str(repo), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"]["allow-to-deny"] == len(_expected_flips(world["decided"]))
    bundles = list((world["state"] / "decide-cache").glob("*/bundle.wasm.tar.gz"))
    assert bundles
    for bundle in bundles:  # the baseline's and the tightened one's
        done = _cli(world, "--candidate", str(bundle), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["changed"] in (0, len(_expected_flips(world["decided"])))
    missing = _cli(world, "--candidate", "no-such-ref", "--repo", str(repo))
    assert missing.returncode == 1
    assert "--candidate 'no-such-ref': not a bundle file, a folder, or a git ref" in missing.stderr


def test_records_without_a_kept_intent_are_skipped_and_counted(world: dict[str, Any], tmp_path: Path) -> None:
    log = tmp_path / "decisions.sqlite"
    record_decisions(log, baseline(world["state"]), 1, max_bytes=185)
    sizes = dict(sqlite3.connect(log).execute("SELECT decision_id, size FROM decision_intents").fetchall())
    too_large = sum(1 for s in sizes.values() if s > 185)
    with sqlite3.connect(log) as db:  # as retention would: the records stay, the intent goes
        dropped = db.execute(
            "DELETE FROM decision_intents WHERE decision_id = (SELECT decision_id FROM decision_intents "
            "WHERE intent IS NOT NULL LIMIT 1)"
        ).rowcount
    # An answer the engine failed to give (a timeout under load) is not the policy's: replaying it
    # would report a deny-to-allow no policy change made.
    failed = render.engine_failure(
        EngineTimeout("deadline"),
        INTENT,
        decision_id="timed-out",
        decided_at=datetime.now(UTC),
        evaluation_ms=1.0,
    )
    log_again = DecisionLog(log)
    text = render.canonical_intent(INTENT)
    log_again.append(failed, render.digest_of(text), text)
    log_again.close()
    report = replay(recorded(log, Selection()), baseline(world["state"]))
    assert 0 < too_large < len(sizes) and dropped == 1
    assert dict(report.skipped) == {TOO_LARGE: too_large, NOT_KEPT: 1, ENGINE_FAILED: 1}
    assert report.replayed == len(sizes) - too_large - 1 and report.changed == 0


def test_bad_options_are_named(world: dict[str, Any]) -> None:
    done = _cli(world, "--candidate", str(ROOT / "policies"), "--fail-on", "allow-to-maybe")
    assert done.returncode == 2 and "--fail-on: unknown change kind(s) allow-to-maybe" in done.stderr
    done = _cli(world, "--candidate", str(ROOT / "policies"), "--since", "2026-01-01T00:00:00")
    assert "--since: '2026-01-01T00:00:00' has no zone" in done.stderr
    done = _cli(world, "--candidate", str(ROOT / "policies"), "--records", str(world["root"] / "nope.sqlite"))
    assert done.returncode == 1 and "no decision log at" in done.stderr


def test_central_records_in_postgresql_are_replayed(
    world: dict[str, Any], tmp_path: Path, pg_url: str
) -> None:
    decided = record_decisions(tmp_path / "decisions.sqlite", baseline(world["state"]), 1, url=pg_url)
    done = _cli(world, "--candidate", str(world["tightened"]), "--records", pg_url, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["replayed"] == len(decided) == len(example_intents())
    flips = _expected_flips(decided, rounds=1)
    assert report["counts"]["allow-to-deny"] == len(flips) > 0
    assert {c["decision_id"] for c in report["changes"]} == {d["decision_id"] for d in flips}


def test_rebased_records_compare_with_the_revision_active_now(world: dict[str, Any]) -> None:
    """The rollout's report (pdp/lifecycle/services/rollouts.py): records answered on the tightened rule,
    decided again on the baseline first, show no change against the baseline, where replaying the
    recorded answers would report each of its refusals as a deny-to-allow."""
    from pdp.oneshot import cached_bundle
    from pdp.replay.run import rebased
    from tests.replay_fixtures import settings

    state = world["root"] / "rebase-state"
    tight, _ = cached_bundle(settings(state).replace(policies=world["tightened"]))
    log = world["root"] / "tightened.sqlite"
    record_decisions(log, tight, 1)
    base = baseline(state)
    plain = replay(recorded(log, Selection()), base)
    assert plain.counts["deny-to-allow"] >= 1
    now = replay(rebased(recorded(log, Selection()), base), base)
    assert now.replayed == plain.replayed == len(example_intents()) and now.changed == 0
    against_tight = replay(rebased(recorded(log, Selection()), base), tight)
    assert against_tight.counts[ALLOW_TO_DENY] == plain.counts["deny-to-allow"]
    assert {c.recorded.revision for c in against_tight.changes} == {base.revision}

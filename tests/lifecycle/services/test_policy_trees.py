"""The lifecycle's policy trees: content-addressed copies and the active pointer the worker builds
from (pdp/lifecycle/services/policy_trees.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from pdp.lifecycle.services import policy_trees
from tests.lifecycle.harness import ROOT


def test_a_copy_is_keyed_by_content_and_holds_only_bundle_files(tmp_path: Path) -> None:
    copy, found = policy_trees.snapshot(ROOT / "policies", tmp_path)
    assert found == policy_trees.digest(ROOT / "policies") == policy_trees.digest(copy)
    assert copy == tmp_path / "policies" / found[:16]
    assert not list(copy.rglob("*_test.rego")) and list(copy.rglob("*.rego"))
    again, _ = policy_trees.snapshot(ROOT / "policies", tmp_path)
    assert again == copy and len([p for p in (tmp_path / "policies").iterdir()]) == 1


def test_one_changed_byte_is_another_tree(tmp_path: Path) -> None:
    copy, found = policy_trees.snapshot(ROOT / "policies", tmp_path / "a")
    rule = next(copy.rglob("residency.rego"))
    rule.write_text(rule.read_text() + "\n# a comment\n")
    assert policy_trees.digest(copy) != found


def test_a_folder_without_rules_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no policy"):
        policy_trees.digest(tmp_path)


def test_the_pointer_decides_what_the_worker_builds(tmp_path: Path) -> None:
    configured = ROOT / "policies"
    assert policy_trees.policies_to_build(tmp_path, configured) == configured  # before any rollout
    copy, found = policy_trees.snapshot(configured, tmp_path)
    policy_trees.set_active(tmp_path, {"path": str(copy), "digest": found, "rollout": "r1"})
    pointer = tmp_path / "policies" / policy_trees.ACTIVE
    assert stat.S_IMODE(pointer.stat().st_mode) == 0o600
    assert json.loads(pointer.read_text())["rollout"] == "r1"
    assert policy_trees.policies_to_build(tmp_path, configured) == copy
    pointer.write_text(json.dumps({"path": str(tmp_path / "gone")}))
    with pytest.raises(ValueError, match=r"the active policies .* are gone"):
        policy_trees.policies_to_build(tmp_path, configured)
    pointer.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        policy_trees.policies_to_build(tmp_path, configured)

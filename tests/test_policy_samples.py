"""Every sample input kept beside the policies is decided as its file says, by the real OPA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pdp.embedded import EmbeddedPDP
from tests.conftest import ROOT

SAMPLES = sorted((ROOT / "policies").glob("**/samples/*.json"))


def load_sample(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text())
    return doc[path.stem]  # type: ignore[no-any-return]


def test_every_policy_area_has_samples() -> None:
    areas = {p.parent.parent.name for p in SAMPLES}
    assert {"admission", "placement", "isolation", "residency", "preemption", "sharing", "tenancy"} <= areas


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_sample(stack: EmbeddedPDP, path: Path) -> None:
    sample = load_sample(path)
    decision = stack.point.decide(sample["input"])
    assert decision.outcome == sample["expect"]["outcome"], decision.to_dict()
    assert sorted(set(decision.reason_codes)) == sorted(sample["expect"]["codes"]), decision.to_dict()

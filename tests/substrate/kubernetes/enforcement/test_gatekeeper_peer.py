"""The benchmark peer's residency rule (bench/gatekeeper.py) judges the bench's pods as the
project's webhook does: the project's verdicts here, Gatekeeper's with `gator verify`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.gatekeeper import CASES, allowed_regions, gator, verify, write_suite
from pdp.point import DecisionPoint
from pdp.substrate.kubernetes.enforcement.webhook import AdmissionWebhook
from tests.conftest import EXAMPLES
from tests.substrate.kubernetes.enforcement.conftest import review


@pytest.mark.parametrize("name", list(CASES))
def test_the_projects_webhook_gives_the_peers_verdict(point: DecisionPoint, name: str) -> None:
    pod, denied = CASES[name]
    response = AdmissionWebhook(point).review(json.dumps(review(pod, "acme-prod")).encode())["response"]
    assert response["allowed"] is not denied, response
    if denied:
        assert "RESIDENCY_VIOLATION" in response["status"]["message"]


def test_allowed_regions_follow_data_residency() -> None:
    regions = allowed_regions(EXAMPLES / "tenants", EXAMPLES / "fleet.yaml")
    assert regions["acme-prod"] == ["eu-central-1", "eu-west-1"]
    assert "us-east-1" in regions["globex-ml"] and "eu-west-1" in regions["globex-ml"]


@pytest.mark.skipif(not gator().exists(), reason=f"{gator()} not built: run scripts/build-gatekeeper")
def test_gator_verify_gives_the_same_verdicts(tmp_path: Path) -> None:
    write_suite(tmp_path, EXAMPLES / "tenants", EXAMPLES / "fleet.yaml")
    result = verify(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in CASES:
        assert name in result.stdout

"""Which of the trace's tenants the lifecycle onboards through the product API, and which are
declared with the fleet (their dedicated pools are in the fleet document already)."""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.fleet.mapping import load_mapping, plan
from bench.fleet.onboarding import declared, write_examples
from bench.fleet.trace import read_nodes, read_tasks

SLICE = Path(__file__).resolve().parents[3] / "bench" / "fleet" / "slice"


def test_the_tenants_owning_a_dedicated_pool_are_declared_and_the_others_onboarded(tmp_path: Path) -> None:
    the_plan = plan(
        read_nodes(SLICE / "nodes-every-3rd.csv"), read_tasks(SLICE / "tasks-every-8th.csv"), load_mapping()
    )
    assert declared(the_plan.fleet, the_plan.policies) == ["acme", "bolt"]
    # A dedicated tenant without a pool in the fleet is onboarded (the lifecycle carves it one).
    pool_less = {**the_plan.policies, "nova": {**the_plan.policies["acme"], "name": "nova"}}
    assert "nova" not in declared(the_plan.fleet, pool_less)
    folder = write_examples(tmp_path, the_plan.fleet, {"acme": the_plan.policies["acme"]})
    assert yaml.safe_load((folder / "fleet.yaml").read_text())["fleet"] == the_plan.fleet
    assert [p.name for p in (folder / "tenants").iterdir()] == ["acme.yaml"]

"""Every trace tenant is onboarded through the product API, the enterprise tenants that own a
dedicated pool of the fleet document (acme, bolt) too: the worker starts knowing no tenant, and its
bundle's fleet sets their pools aside for their onboarding (pdp/lifecycle/fleet.py)."""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.fleet.mapping import load_mapping, plan
from bench.fleet.onboarding import write_examples
from bench.fleet.trace import read_nodes, read_tasks
from pdp.lifecycle import fleet as fleets

SLICE = Path(__file__).resolve().parents[3] / "bench" / "fleet" / "slice"


def test_the_worker_starts_with_no_tenant_and_the_dedicated_pools_await_onboarding(tmp_path: Path) -> None:
    the_plan = plan(
        read_nodes(SLICE / "nodes-every-3rd.csv"), read_tasks(SLICE / "tasks-every-8th.csv"), load_mapping()
    )
    folder = write_examples(tmp_path, the_plan.fleet, {})
    assert yaml.safe_load((folder / "fleet.yaml").read_text())["fleet"] == the_plan.fleet
    assert list((folder / "tenants").iterdir()) == []
    # The bundle the worker starts with: acme's and bolt's pools wait for their onboarding, apart
    # from the pools placement and admission read; each is among them once its tenant is published.
    fleet, _ = fleets.effective(the_plan.fleet, [], set())
    awaiting = {str(p["tenant"]) for pools in fleet["awaiting"].values() for p in pools.values()}
    assert awaiting == {"acme", "bolt"}
    assert all(p["isolation"] == "shared" for c in fleet["clusters"].values() for p in c["pools"].values())
    fleet, _ = fleets.effective(the_plan.fleet, [], set(the_plan.policies))
    assert "awaiting" not in fleet
    assert {the_plan.policies[t]["isolation"] for t in awaiting} == {"dedicated"}

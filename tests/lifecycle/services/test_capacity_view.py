"""`/v1/capacity` per region, GPU class and pool kind: an operator sees every pool (dedicated ones
with their owner); a tenant sees what its policy lets it use and never another tenant's dedicated
pool. What the tenant is shown equals what the PDP would place it on."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from pdp.embedded import EmbeddedPDP
from pdp.lifecycle.services import inventory
from tests.lifecycle.harness import EXAMPLES, Worker, onboard, tenant_doc

FLEET = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
TENANTS = {
    p.stem: yaml.safe_load(p.read_text())["tenant"] for p in sorted((EXAMPLES / "tenants").glob("*.yaml"))
}
EU_SHARED = tenant_doc("acme-eu", "eushared", ["eushared-prod"], isolation="shared", tier="standard")


def test_the_operator_sees_every_pool_per_region_class_and_kind_with_owners() -> None:
    rows = inventory.by_region(inventory.pools(FLEET), with_owner=True)
    h100 = [
        (r["region"], r["kind"], r.get("owner"), r["gpus"]) for r in rows if r["gpu_class"] == "H100-80GB"
    ]
    assert h100 == [
        ("eu-west-1", "dedicated", "acme-eu", 16),
        ("eu-west-1", "shared", None, 32),
        ("us-east-1", "shared", None, 64),
    ]
    assert sum(g for *_, g in h100) == 112  # what the issue saw as one figure


def test_an_eu_only_shared_tenant_sees_the_eu_shared_pools_only() -> None:
    view = inventory.tenant_view({"name": "eushared", "policy": EU_SHARED["tenant"]}, FLEET, [])
    assert view["regions"] == ["eu-west-1"]
    assert view["capacity"] == [
        {"region": "eu-west-1", "gpu_class": "H100-80GB", "kind": "shared", "gpus": 32, "nodes": 4,
         "pools": ["eu-west/eu-h100-shared"]}
    ]  # fmt: skip
    assert "acme" not in json.dumps(view["capacity"]) and "owner" not in json.dumps(view)


def test_a_dedicated_tenant_sees_its_own_pool() -> None:
    view = inventory.tenant_view({"name": "acme-eu", "policy": TENANTS["acme-eu"]}, FLEET, [])
    assert [(r["region"], r["kind"], r["gpus"], r["pools"]) for r in view["capacity"]] == [
        ("eu-west-1", "dedicated", 16, ["eu-west/acme-h100-dedicated"])
    ]


@pytest.mark.parametrize("name", sorted(TENANTS))
def test_what_a_tenant_is_shown_is_where_the_pdp_places_it(stack: EmbeddedPDP, name: str) -> None:
    policy = TENANTS[name]
    usable = inventory.usable(policy, FLEET)
    strategies = inventory.STRATEGIES if policy["allow_gpu_sharing"] else ("none",)
    checked = 0
    for gpu_class in sorted(policy["entitlements"]):
        for strategy in strategies:
            payload = {"deployment": "probe", "gpu_class": gpu_class, "gpus_per_replica": 1, "replicas": 1,
                       "sharing": strategy}  # fmt: skip
            decision = stack.point.decide(
                {
                    "kind": "deploy_model",
                    "tenant": name,
                    "actor": "test",
                    "usage": {},
                    "deploy_model": payload,
                }
            ).to_dict()
            placed = sorted(decision.get("constraints", {}).get("eligible_clusters", []))
            shown = sorted({r["cluster"] for r in usable if r["gpu_class"] == gpu_class
                            and r["sharing_strategy"] == strategy})  # fmt: skip
            assert placed == shown, (gpu_class, strategy, decision["reasons"])
            checked += bool(shown)
    assert checked, f"no class of {name} is placeable: the comparison proved nothing"


def test_the_api_answers_a_tenant_with_its_own_view_and_the_operator_with_everything(worker: Worker) -> None:
    token = onboard(worker, EU_SHARED)
    with worker.client(token) as c:
        mine: dict[str, Any] = c.get("/v1/capacity").json()
    assert mine["tenant"] == "eushared" and mine["regions"] == ["eu-west-1"]
    assert [(r["region"], r["gpu_class"], r["kind"], r["gpus"]) for r in mine["capacity"]] == [
        ("eu-west-1", "H100-80GB", "shared", 32)
    ]
    assert mine["entitlements"] == {"H100-80GB": 4} and mine["usage"] == {}
    assert "acme-h100-dedicated" not in json.dumps(mine) and "queue" in mine
    with worker.client() as c:
        every: dict[str, Any] = c.get("/v1/capacity").json()
    acme = {"region": "eu-west-1", "gpu_class": "H100-80GB", "kind": "dedicated", "owner": "acme-eu",
            "gpus": 16, "nodes": 2, "pools": ["eu-west/acme-h100-dedicated"]}  # fmt: skip
    assert acme in every["capacity"]
    assert {c["gpu_class"] for c in every["classes"]} == {"H100-80GB", "A100-40GB", "MI300X"}

"""Carving dedicated pools out of shared capacity, the pure part: which nodes, the Node objects,
and the fleet the bundle then carries (pdp/substrate/kubernetes/pools.py, pdp/lifecycle/fleet.py)."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from pdp.config.index import fleet_index
from pdp.lifecycle import fleet as fleets
from pdp.schemas import validator
from pdp.substrate.kubernetes import pools
from tests.lifecycle.harness import EXAMPLES

FLEET = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
ACME = yaml.safe_load((EXAMPLES / "tenants" / "acme-eu.yaml").read_text())["tenant"]
NEW = {**ACME, "name": "acme-new", "namespaces": ["acme-new-prod"], "entitlements": {"H100-80GB": 12}}


def _node(name: str, pool: str, region: str, **labels: str) -> dict[str, Any]:
    return {
        "name": name,
        "labels": {pools.POOL_LABEL: pool, pools.REGION_LABEL: region, **labels},
        "taints": [],
    }


def test_pool_names_are_label_values() -> None:
    assert pools.pool_name("acme-new", "H100-80GB") == "acme-new-h100-80gb"
    long = pools.pool_name("t" * 63, "H100-80GB")
    assert len(long) <= 63 and long[0].isalnum() and long[-1].isalnum()
    assert long != pools.pool_name("t" * 62 + "u", "H100-80GB")


def test_carving_takes_enough_whole_nodes_of_an_allowed_region_least_occupied_first() -> None:
    nodes = [
        _node("eu-1", "eu-h100-shared", "eu-west-1"),
        _node("eu-2", "eu-h100-shared", "eu-west-1"),
        _node("eu-3", "eu-h100-shared", "eu-west-1"),
        _node("us-1", "us-h100-shared", "us-east-1"),
        _node("eu-x", "eu-h100-shared", "eu-west-1", **{pools.DEDICATED_TENANT_LABEL: "other"}),
    ]
    occupancy = {"eu-1": [{"tenant": "globex", "deployment": "serve"}]}
    options, problems = pools.candidates("acme-new", NEW, "H100-80GB", FLEET, nodes, occupancy)
    assert problems == []
    # eu-only: never the US pool; 12 GPUs on 8-GPU nodes: 2 nodes; the free ones first.
    [option] = options
    assert option["cluster"] == "eu-west" and option["source_pool"] == "eu-h100-shared"
    assert option["nodes"] == ["eu-2", "eu-3"] and option["occupants"] == []
    assert option["pool"] == "acme-new-h100-80gb" and option["gpus_per_node"] == 8
    assert option["before"]["eu-2"] == {"labels": {pools.POOL_LABEL: "eu-h100-shared"}, "taints": []}
    # With eu-3 claimed by another carving, the occupied node is the only way: it names its occupant.
    [busy], _ = pools.candidates("acme-new", NEW, "H100-80GB", FLEET, nodes, occupancy, {"eu-3"})
    assert busy["nodes"] == ["eu-1", "eu-2"]
    assert busy["occupants"] == [{"tenant": "globex", "deployment": "serve"}]
    # Once the PDP refused to let it preempt globex/serve, that node is not free any more.
    _, why = pools.candidates(
        "acme-new", NEW, "H100-80GB", FLEET, nodes, occupancy, {"eu-3"}, {("globex", "serve")}
    )
    assert why == ["pool 'eu-h100-shared' of cluster 'eu-west' has 1 free node(s) of the 2 needed"]


def test_no_capacity_says_which_pool_lacks_how_many_nodes() -> None:
    fleet = copy.deepcopy(FLEET)
    fleet["clusters"]["eu-west"]["pools"]["eu-h100-shared"]["nodes"] = 1
    nodes = [_node("eu-1", "eu-h100-shared", "eu-west-1"), _node("eu-2", "eu-h100-shared", "eu-west-1")]
    options, problems = pools.candidates("acme-new", NEW, "H100-80GB", fleet, nodes, {})
    # The cluster has two nodes but the fleet document grants the pool one: the fleet bounds it.
    assert options == []
    assert problems == ["pool 'eu-h100-shared' of cluster 'eu-west' has 1 free node(s) of the 2 needed"]
    reason = pools.shortfall("acme-new", "H100-80GB", 12, problems)
    assert reason.startswith("no capacity for a dedicated H100-80GB pool of 12 GPU(s) for tenant 'acme-new'")
    # A class no shared pool of the residency offers.
    us_only = {**fleet, "clusters": {"us-east": fleet["clusters"]["us-east"]}}
    _, none = pools.candidates("acme-new", {**NEW, "entitlements": {"MI300X": 8}}, "MI300X", us_only, [], {})
    assert none == ["no shared pool of MI300X with sharing [none] in data_residency eu-only"]


def test_a_tenant_that_forbids_sharing_gets_no_time_sliced_nodes() -> None:
    a100 = {**NEW, "entitlements": {"A100-40GB": 8}}
    nodes = [_node("ts-1", "eu-a100-timeslice", "eu-west-1")]
    assert pools.candidates("acme-new", a100, "A100-40GB", FLEET, nodes, {})[0] == []
    shared = pools.candidates("acme-new", {**a100, "allow_gpu_sharing": True}, "A100-40GB", FLEET, nodes, {})
    assert [o["sharing_strategy"] for o in shared[0]] == ["time-slicing"]


def test_nodes_are_labelled_and_tainted_and_given_back_as_they_were() -> None:
    before = {
        "labels": {pools.POOL_LABEL: "eu-h100-shared"},
        "taints": [{"key": "example.com/maintenance", "value": "soon", "effect": "PreferNoSchedule"}],
    }
    carved = pools.carve("eu-1", before, "acme-new", "acme-new-h100-80gb")
    assert carved["metadata"] == {
        "name": "eu-1",
        "labels": {"gpupaas.io/pool": "acme-new-h100-80gb", "gpupaas.io/dedicated-tenant": "acme-new"},
    }
    # The policies' taint, and the node's own taints kept (taints are one atomic list).
    assert carved["spec"]["taints"] == [
        before["taints"][0],
        {"key": "gpupaas.io/dedicated", "value": "acme-new", "effect": "NoSchedule"},
    ]
    restored = pools.restore("eu-1", before)
    assert restored["metadata"]["labels"] == {"gpupaas.io/pool": "eu-h100-shared"}
    assert restored["spec"]["taints"] == before["taints"]
    # A node without taints: the applied object leaves them out, so the apply removes the taint.
    assert "spec" not in pools.restore("eu-2", {"labels": {pools.POOL_LABEL: "eu-h100-shared"}, "taints": []})


CARVING = {
    "pool": "acme-new-h100-80gb",
    "tenant": "acme-new",
    "cluster": "eu-west",
    "source_pool": "eu-h100-shared",
    "gpu_class": "H100-80GB",
    "nodes": ["eu-west-eu-h100-shared-1", "eu-west-eu-h100-shared-2"],
}


def test_the_bundles_fleet_moves_the_carved_nodes_into_the_dedicated_pool() -> None:
    tenants = {"acme-eu", "globex", "initech-spot", "acme-new"}
    fleet, notes = fleets.effective(FLEET, [CARVING], tenants)
    pools_ = fleet["clusters"]["eu-west"]["pools"]
    assert pools_["eu-h100-shared"]["nodes"] == 2
    assert pools_["acme-new-h100-80gb"] == {
        "gpu_class": "H100-80GB",
        "isolation": "dedicated",
        "tenant": "acme-new",
        "sharing_strategy": "none",
        "nodes": 2,
        "gpus_per_node": 8,
    }
    assert notes == [] and FLEET["clusters"]["eu-west"]["pools"]["eu-h100-shared"]["nodes"] == 4
    # The nominal nodes of a dry run follow: two fewer shared ones, the carved ones relabelled.
    nominal = {n["name"]: n for n in pools.nominal_nodes(fleet, [CARVING])}
    assert [n for n in nominal if "eu-h100-shared" in n] == [
        "eu-west-eu-h100-shared-3",
        "eu-west-eu-h100-shared-4",
        "eu-west-eu-h100-shared-1",
        "eu-west-eu-h100-shared-2",
    ]
    assert nominal["eu-west-eu-h100-shared-1"]["labels"][pools.DEDICATED_TENANT_LABEL] == "acme-new"


def test_a_dedicated_pool_is_in_the_bundle_only_while_its_tenant_is() -> None:
    fleet, notes = fleets.effective(FLEET, [CARVING], {"globex"})
    pools_ = fleet["clusters"]["eu-west"]["pools"]
    # Not yet published (or withdrawn): its nodes are out of the shared pool, its pool is not in.
    assert "acme-new-h100-80gb" not in pools_ and pools_["eu-h100-shared"]["nodes"] == 2
    assert "acme-h100-dedicated" not in pools_
    set_aside = "of cluster 'eu-west' set aside: its tenant"
    assert notes == [
        f"dedicated pool 'acme-h100-dedicated' {set_aside} 'acme-eu' is not in the bundle",
        f"dedicated pool 'acme-new-h100-80gb' {set_aside} 'acme-new' is not in the bundle",
    ]


def test_a_dedicated_pool_waiting_for_its_tenant_is_set_aside_for_its_onboarding_alone() -> None:
    declared = FLEET["clusters"]["eu-west"]["pools"]["acme-h100-dedicated"]
    fleet, _ = fleets.effective(FLEET, [], {"globex", "initech-spot"})
    # The operator racked and declared acme-eu's pool before acme-eu was onboarded: it waits apart
    # from the clusters' pools, where the policies' onboarding of acme-eu (gpupaas.tenancy) finds it.
    assert fleet["awaiting"] == {"eu-west": {"acme-h100-dedicated": declared}}
    assert list(validator("fleet").iter_errors({"fleet": fleet})) == []  # the bundle build loads it
    # Placement and admission read the clusters' pools and their index: no trace of it there.
    assert "acme-h100-dedicated" not in fleet["clusters"]["eu-west"]["pools"]
    index = fleet_index(fleet)
    assert "acme-eu" not in index["dedicated"] and "eu-acme-1" not in index["nodes"]
    # Published, it is among its cluster's pools, and nothing waits.
    fleet, notes = fleets.effective(FLEET, [], {"globex", "initech-spot", "acme-eu"})
    assert fleet["clusters"]["eu-west"]["pools"]["acme-h100-dedicated"] == declared
    assert "awaiting" not in fleet and notes == []
    # `awaiting` is the lifecycle's: one in the document it reads is not carried over.
    fleet, _ = fleets.effective({**FLEET, "awaiting": {"us-east": {"x": declared}}}, [], {"acme-eu"})
    assert "awaiting" not in fleet

"""GPU sharing per pool (pdp/substrate/gpu_operator/sharing.py): the rendered device plugin and
MIG manager configurations are accepted by NVIDIA's own parsers (tools/gpu-config-check), which
derive from them the sharing the fleet asks for; bad fleet settings are refused by name."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
import yaml

from pdp.lifecycle import fleet as fleets
from pdp.substrate.gpu_operator import sharing
from pdp.substrate.labels import POOL_LABEL
from tests.conftest import EXAMPLES, ROOT
from tests.gpu_config_check import check


def example_fleet() -> dict[str, Any]:
    return dict(yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"])


def nvidia_pools(fleet: dict[str, Any]) -> dict[str, dict[str, Any]]:
    classes = fleet["gpu_classes"]
    return {
        p: pool
        for c in fleet["clusters"].values()
        for p, pool in c["pools"].items()
        if classes[pool["gpu_class"]]["vendor"] == "nvidia"
    }


def test_every_pool_config_is_accepted_by_the_device_plugin_and_yields_the_fleets_sharing() -> None:
    fleet = example_fleet()
    shares = sharing.pools(fleet)
    configmap = sharing.device_plugin_configmap(shares)
    migmap = sharing.mig_parted_configmap(shares)
    result = check(configmap["data"], migmap["data"][sharing.MIG_PARTED_KEY])
    pools = nvidia_pools(fleet)
    # One named config per NVIDIA pool; the AMD pool has none.
    assert set(result["device_plugin"]) == set(pools) and "eu-mi300x-shared" not in pools
    strategies = set()
    for name, pool in pools.items():
        parsed = result["device_plugin"][name]
        assert "error" not in parsed, (name, parsed)
        strategy = pool.get("sharing_strategy", "none")
        strategies.add(strategy)
        # What GFD publishes from it (nvidia.com/gpu.sharing-strategy, nvidia.com/mig.strategy),
        # derived by the plugin's own code, is the fleet's strategy, and the labels the platform
        # applies say the same.
        labels = next(s for s in shares if s.pool == name).node_labels()
        assert parsed["sharing_strategy"] == labels[sharing.SHARING_STRATEGY_LABEL]
        assert parsed["mig_strategy"] == labels[sharing.MIG_STRATEGY_LABEL]
        if strategy == "time-slicing":
            assert parsed["sharing_strategy"] == "time-slicing"
            assert parsed["replicas"] == pool["sharing_replicas"] and not parsed.get("rename_by_default")
        elif strategy == "mig":
            assert (parsed["sharing_strategy"], parsed["mig_strategy"]) == ("none", "mixed")
        else:
            assert (parsed["sharing_strategy"], parsed["mig_strategy"]) == ("none", "none")
    assert strategies == {"none", "time-slicing", "mig"}
    mig = result["mig_parted"]
    assert "error" not in mig, mig
    assert mig["configs"] == {
        "all-disabled": [{"devices": "all", "mig_enabled": False, "mig_devices": {}}],
        "us-a100-mig": [{"devices": "all", "mig_enabled": True, "mig_devices": {"1g.5gb": 7}}],
    }


def test_mps_pools_and_default_replicas_and_mig_layouts_parse_too() -> None:
    fleet = example_fleet()
    pools = fleet["clusters"]["us-east"]["pools"]
    pools["us-h100-shared"]["sharing_strategy"] = "mps"
    pools["us-h100-shared"]["sharing_replicas"] = 10
    del pools["us-a100-spot"]["sharing_replicas"]  # the schema's default
    del pools["us-a100-mig"]["mig_devices"]  # the class's smallest profile, as many as fit
    fleet["clusters"]["eu-west"]["pools"]["eu-h100-shared"].update(
        sharing_strategy="mig", mig_devices={"3g.40gb": 1, "1g.10gb": 4}
    )
    shares = sharing.pools(fleet)
    result = check(
        sharing.device_plugin_configmap(shares)["data"],
        sharing.mig_parted_configmap(shares)["data"][sharing.MIG_PARTED_KEY],
    )
    dp = result["device_plugin"]
    assert dp["us-h100-shared"] == {"sharing_strategy": "mps", "mig_strategy": "none", "replicas": 10}
    assert dp["us-a100-spot"]["replicas"] == sharing.DEFAULT_REPLICAS == 4
    configs = result["mig_parted"]["configs"]
    assert configs["us-a100-mig"][0]["mig_devices"] == {"1g.5gb": 7}
    assert configs["eu-h100-shared"][0]["mig_devices"] == {"1g.10gb": 4, "3g.40gb": 1}


def test_the_checker_refuses_what_the_device_plugin_refuses() -> None:
    # The checker can fail: configs the plugin (or, for misspelt keys, its strict schema) refuses.
    result = check(
        {
            "one-replica": "version: v1\nsharing:\n  timeSlicing:\n    resources:\n"
            "    - name: nvidia.com/gpu\n      replicas: 1\n",
            "misspelt": "version: v1\nsharing:\n  timeSlcing: {}\n",
            "mps-mixed": "version: v1\nflags:\n  migStrategy: mixed\nsharing:\n  mps:\n    resources:\n"
            "    - name: nvidia.com/gpu\n      replicas: 2\n",
            "bad-mig-strategy": "version: v1\nflags:\n  migStrategy: sometimes\n",
            "v2": "version: v2\n",
        },
        "version: v1\nmig-configs:\n  p:\n  - devices: all\n",
    )
    dp = result["device_plugin"]
    assert "replicas must be >= 2" in dp["one-replica"]["error"]
    assert "timeSlcing" in dp["misspelt"]["error"]
    assert "not supported with MPS" in dp["mps-mixed"]["error"]
    assert "unknown MIG strategy" in dp["bad-mig-strategy"]["error"]
    assert "unknown version" in dp["v2"]["error"]
    assert "mig-enabled" in result["mig_parted"]["error"]


def test_node_labels_select_the_pools_config() -> None:
    fleet = example_fleet()
    nodes = [
        {"name": "a", "labels": {POOL_LABEL: "eu-a100-timeslice"}},
        {"name": "b", "labels": {POOL_LABEL: "us-a100-mig"}},
        {"name": "c", "labels": {POOL_LABEL: "eu-mi300x-shared"}},  # AMD: nothing
        {"name": "d", "labels": {POOL_LABEL: "not-in-the-fleet"}},
        {"name": "e", "labels": {}},
    ]
    objs = sharing.render(fleet, nodes)
    assert [o["kind"] for o in objs] == ["Namespace", "ConfigMap", "ConfigMap", "Node", "Node"]
    labels = {o["metadata"]["name"]: o["metadata"]["labels"] for o in objs if o["kind"] == "Node"}
    assert labels == {
        "a": {
            "nvidia.com/device-plugin.config": "eu-a100-timeslice",
            "nvidia.com/mig.config": "all-disabled",
            "nvidia.com/gpu.sharing-strategy": "time-slicing",
            "nvidia.com/mig.strategy": "none",
        },
        "b": {
            "nvidia.com/device-plugin.config": "us-a100-mig",
            "nvidia.com/mig.config": "us-a100-mig",
            "nvidia.com/gpu.sharing-strategy": "none",
            "nvidia.com/mig.strategy": "mixed",
        },
    }


def _pool(fleet: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c["pools"][name] for c in fleet["clusters"].values() if name in c["pools"])


@pytest.mark.parametrize(
    ("pool", "settings", "message"),
    [
        ("us-a100-mig", {"mig_devices": {"1g.10gb": 7}}, "'1g.10gb' is not one of GPU class 'A100-40GB'"),
        ("us-a100-mig", {"mig_devices": {"1g.5gb": 7, "2g.10gb": 1}}, "take 9 compute slices of a GPU's 7"),
        ("us-a100-mig", {"mig_devices": {"1g.5gb": 0}}, "must be a profile <g>g.<mem>gb with a count >= 1"),
        (
            "us-a100-spot",
            {"sharing_replicas": 1},
            "'us-a100-spot' of cluster 'us-east': sharing_replicas 1",
        ),
        ("eu-h100-shared", {"sharing_strategy": "vgpu"}, "sharing_strategy 'vgpu' is not"),
    ],
)
def test_bad_pool_sharing_settings_are_refused_by_name(
    pool: str, settings: dict[str, Any], message: str
) -> None:
    fleet = example_fleet()
    _pool(fleet, pool).update(settings)
    with pytest.raises(sharing.SharingConfigError, match=message.replace("(", r"\(")) as err:
        sharing.pools(fleet)
    assert pool in str(err.value)


def test_a_mig_pool_of_a_class_without_mig_resources_needs_mig_devices() -> None:
    fleet = example_fleet()
    del fleet["gpu_classes"]["A100-40GB"]["mig_resources"]
    del _pool(fleet, "us-a100-mig")["mig_devices"]
    with pytest.raises(
        sharing.SharingConfigError, match="mig_devices is not given and GPU class 'A100-40GB'"
    ):
        sharing.pools(fleet)


def test_a_pool_name_used_in_two_clusters_is_refused() -> None:
    fleet = example_fleet()
    fleet["clusters"]["us-east"]["pools"]["eu-h100-shared"] = copy.deepcopy(
        fleet["clusters"]["eu-west"]["pools"]["eu-h100-shared"]
    )
    with pytest.raises(sharing.SharingConfigError, match="also used in cluster 'eu-west'"):
        sharing.pools(fleet)


def test_the_fleet_schema_takes_the_sharing_settings_and_refuses_bad_ones() -> None:
    schema = yaml.safe_load((ROOT / "pdp" / "schemas" / "fleet.schema.json").read_text())
    doc = {"fleet": example_fleet()}
    jsonschema.validate(doc, schema)
    for field, value in (("sharing_replicas", 1), ("mig_devices", {"1g": 7}), ("mig_devices", {"1g.5gb": 8})):
        bad = copy.deepcopy(doc)
        bad["fleet"]["clusters"]["us-east"]["pools"]["us-a100-mig"][field] = value
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_a_carved_pool_shares_its_gpus_like_its_source() -> None:
    fleet = example_fleet()
    carving = {
        "pool": "initech-a100-40gb",
        "tenant": "initech",
        "cluster": "us-east",
        "source_pool": "us-a100-spot",
        "gpu_class": "A100-40GB",
        "nodes": ["us-spot-1"],
    }
    effective, _ = fleets.effective(fleet, [carving], ["initech"])
    carved = effective["clusters"]["us-east"]["pools"]["initech-a100-40gb"]
    assert (carved["sharing_strategy"], carved["sharing_replicas"]) == ("time-slicing", 2)
    [share] = [s for s in sharing.pools(effective) if s.pool == "initech-a100-40gb"]
    assert share.node_labels()["nvidia.com/device-plugin.config"] == "initech-a100-40gb"

"""The fleet index the bundle carries equals the one the policies compute from the fleet, so a
decision is the same with or without it."""

from __future__ import annotations

import json
from pathlib import Path

from pdp.config import load_config
from pdp.opa.binary import eval_query
from tests.conftest import EXAMPLES, ROOT


def test_precomputed_index_equals_the_policies_own(tmp_path: Path, opa_binary: Path) -> None:
    config = load_config(EXAMPLES / "tenants", EXAMPLES / "fleet.yaml")
    data = config.bundle_data()
    index = data["gpupaas"].pop("index")
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    policies = [ROOT / "policies" / "gpupaas" / area for area in ("lib", "nodes")]
    computed = eval_query(
        '{"pools": data.gpupaas.lib.pool_index, "dedicated": data.gpupaas.lib.dedicated_index,'
        ' "nodes": data.gpupaas.nodes.node_index, "namespaces": data.gpupaas.lib.namespace_tenant,'
        ' "gpus": data.gpupaas.lib.pool_gpus, "jurisdictions": data.gpupaas.lib.fleet_jurisdictions,'
        ' "shared_capacity": data.gpupaas.lib.shared_capacity,'
        ' "dedicated_capacity": data.gpupaas.lib.dedicated_capacity,'
        ' "regions": data.gpupaas.lib.region_jurisdiction, "labels": data.gpupaas.lib.class_by_label,'
        ' "label_keys": data.gpupaas.lib.class_label_keys}',
        data_paths=[*policies, data_file],
    )
    assert computed == index
    assert index["dedicated"] == {"acme-eu": ["acme-h100-dedicated"]}
    assert index["pools"]["A100-40GB"]["US"]["shared"] == {
        "mig": [["us-east", "us-a100-mig"]],
        "time-slicing": [["us-east", "us-a100-spot"]],
    }
    assert index["nodes"]["eu-acme-2"] == ["eu-west", "acme-h100-dedicated"]
    assert index["nodes"]["us-shared-8"] == ["us-east", "us-h100-shared"]
    assert index["namespaces"]["acme-staging"] == "acme-eu"
    assert index["jurisdictions"] == ["EU", "US"]
    assert index["regions"]["eu-central-1"] == "EU"
    assert index["labels"]["nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3"] == "H100-80GB"
    assert index["gpus"]["eu-west"]["acme-h100-dedicated"] == 2 * 8
    shared_a100_us = {"mig": {"us-east": 16}, "time-slicing": {"us-east": 32}}
    assert index["shared_capacity"]["A100-40GB"]["US"] == shared_a100_us
    # eu-west's dedicated H100 pool (16 GPUs) is not in the 32 of its shared one
    assert index["shared_capacity"]["H100-80GB"]["EU"] == {"none": {"eu-west": 32}}
    assert index["dedicated_capacity"] == {"acme-eu": {"H100-80GB": {"EU": {"none": {"eu-west": 16}}}}}


def test_a_node_listed_twice_indexes_the_same_pool_both_ways(tmp_path: Path, opa_binary: Path) -> None:
    # The build refuses such a fleet (NODE_NAME_CONFLICT); until then both indexes agree.
    config = load_config(EXAMPLES / "tenants", EXAMPLES / "fleet.yaml")
    pools = config.fleet["clusters"]["us-east"]["pools"]
    pools["us-a100-spot"]["node_names"][0] = "eu-acme-1"
    data = config.bundle_data()
    index = data["gpupaas"].pop("index")
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    computed = eval_query(
        "data.gpupaas.nodes.node_index",
        data_paths=[ROOT / "policies" / "gpupaas" / area for area in ("lib", "nodes")] + [data_file],
    )
    assert computed == index["nodes"]
    assert index["nodes"]["eu-acme-1"] == ["eu-west", "acme-h100-dedicated"]

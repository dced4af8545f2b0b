"""The fleet index the bundle carries equals the one the policies compute from the fleet, so a
decision is the same with or without it."""

from __future__ import annotations

import json
from pathlib import Path

from pdp.config import load_config
from pdp.opa.binary import eval_query

from .conftest import EXAMPLES, ROOT


def test_precomputed_index_equals_the_policies_own(tmp_path: Path, opa_binary: Path) -> None:
    config = load_config(EXAMPLES / "tenants", EXAMPLES / "fleet.yaml")
    data = config.bundle_data()
    index = data["gpupaas"].pop("index")
    data_file = tmp_path / "data.json"
    data_file.write_text(json.dumps(data))
    policies = ROOT / "policies" / "gpupaas" / "lib"
    computed = eval_query(
        '{"pools": data.gpupaas.lib.pool_index, "dedicated": data.gpupaas.lib.dedicated_index}',
        data_paths=[policies, data_file],
    )
    assert computed == index
    assert index["dedicated"] == {"acme-eu": ["acme-h100-dedicated"]}
    assert index["pools"]["A100-40GB"]["US"]["shared"] == {
        "mig": [["us-east", "us-a100-mig"]],
        "time-slicing": [["us-east", "us-a100-spot"]],
    }

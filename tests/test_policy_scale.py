"""The policies stay linear in the size of the bundle: with 1,000 tenants and a 10,000-node fleet no
expression of a workload decision is evaluated more than a few thousand times. Counted with OPA's
profiler (a count, not a time, so a loaded machine cannot make it flaky)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pdp.config import load_config
from pdp.opa.binary import find_opa
from tests.conftest import EXAMPLES, ROOT

TENANTS = 1000
POOLS_PER_CLUSTER, CLUSTERS, NODES_PER_POOL = 25, 50, 8
MAX_EVALUATIONS = 50_000  # the quadratic namespace index took 4,004,001 at 1,000 tenants


def write_config(directory: Path) -> None:
    fleet = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())
    fleet["fleet"]["clusters"] = {
        f"c{c}": {
            "region": f"{'eu' if c % 2 else 'us'}-r{c}",
            "jurisdiction": "EU" if c % 2 else "US",
            "pools": {
                f"c{c}-p{p}": {
                    "gpu_class": "H100-80GB",
                    "isolation": "shared",
                    "nodes": NODES_PER_POOL,
                    "gpus_per_node": 8,
                    "node_names": [f"c{c}-p{p}-n{i}" for i in range(NODES_PER_POOL)],
                }
                for p in range(POOLS_PER_CLUSTER)
            },
        }
        for c in range(CLUSTERS)
    }
    (directory / "tenants").mkdir(parents=True)
    (directory / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    for t in range(TENANTS):
        tenant = {
            "name": f"t{t}",
            "tier": "standard",
            "isolation": "shared",
            "data_residency": ["eu-only", "us-only", "any"][t % 3],
            "allow_preemption": False,
            "allow_gpu_sharing": False,
            "namespaces": [f"t{t}-a", f"t{t}-b"],
            "entitlements": {"H100-80GB": 8},
        }
        (directory / "tenants" / f"t{t}.yaml").write_text(yaml.safe_dump({"tenant": tenant}))


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("scale")
    write_config(directory)
    data = load_config(directory / "tenants", directory / "fleet.yaml").bundle_data()
    indexed = directory / "indexed.json"
    indexed.write_text(json.dumps(data))
    del data["gpupaas"]["index"]
    bare = directory / "bare.json"
    bare.write_text(json.dumps(data))
    return {"indexed": indexed, "computed": bare}


def profile(data_file: Path, intent: dict[str, Any]) -> dict[str, Any]:
    argv = [
        str(find_opa()),
        "eval",
        "--format=json",
        "--profile",
        "--profile-limit",
        "100000",
        "--stdin-input",
        "--data",
        str(ROOT / "policies" / "gpupaas"),
        "--ignore",
        "*_test.rego",
        "--data",
        str(data_file),
        "data.gpupaas.decision.result",
    ]
    proc = subprocess.run(
        argv, input=json.dumps(intent), capture_output=True, text=True, timeout=300, check=True
    )
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def most_evaluated(data_file: Path, intent: dict[str, Any]) -> tuple[int, str, Any]:
    out = profile(data_file, intent)
    top = max(out["profile"], key=lambda p: p["num_eval"])
    where = f"{top['location']['file']}:{top['location']['row']}"
    return top["num_eval"], where, out["result"][0]["expressions"][0]["value"]


@pytest.mark.parametrize("index", ["indexed", "computed"])
@pytest.mark.parametrize(
    ("workload", "outcome"),
    [
        ({}, "ALLOW"),
        ({"node_name": "c7-p3-n5"}, "ALLOW"),  # c7: an EU cluster, t0 is eu-only
        ({"node_selector": {"kubernetes.io/hostname": "c8-p3-n5"}}, "DENY"),
    ],
)
def test_a_workload_decision_is_linear_in_tenants_and_nodes(
    data_files: dict[str, Path], opa_binary: Path, index: str, workload: dict[str, Any], outcome: str
) -> None:
    intent = {
        "kind": "admit_workload",
        "admit_workload": {"namespace": "t0-b", "name": "w", "resources": {"nvidia.com/gpu": 1}, **workload},
    }
    evaluations, where, decision = most_evaluated(data_files[index], intent)
    assert decision["outcome"] == outcome and decision["tenant"] == "t0", decision
    assert evaluations < MAX_EVALUATIONS, f"{where} evaluated {evaluations} times"


# Expression evaluations of a whole decision with the bundle's index (docs/performance.md, "Policy
# cost"): 8,325 for this deploy_model and 8,418 for this admit_workload before the index carried
# pool GPUs, eligible pools skipped the per-pool isolation call and the capacity sum came after the
# total; 1,008 and 538 after (t0 may deploy on 625 pools, whose capacity it still sums).
MAX_DECISION_EVALUATIONS = 2_000


@pytest.mark.parametrize(
    "intent",
    [
        {
            "kind": "deploy_model",
            "tenant": "t0",
            "deploy_model": {
                "deployment": "d",
                "gpu_class": "H100-80GB",
                "gpus_per_replica": 2,
                "replicas": 2,
            },
        },
        {
            "kind": "admit_workload",
            "admit_workload": {"namespace": "t0-a", "name": "w", "resources": {"nvidia.com/gpu": 1}},
        },
    ],
    ids=lambda intent: intent["kind"],
)
def test_a_decision_does_not_visit_every_eligible_pool(
    data_files: dict[str, Path], intent: dict[str, Any]
) -> None:
    out = profile(data_files["indexed"], intent)
    evaluations = sum(p["num_eval"] for p in out["profile"])
    assert out["result"][0]["expressions"][0]["value"]["outcome"] == "ALLOW"
    assert evaluations < MAX_DECISION_EVALUATIONS, evaluations

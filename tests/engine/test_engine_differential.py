"""The in-process WebAssembly engine and the OPA sidecar decide identically: the same bundle
revision, and for every intent of a corpus (hand-written and generated) the same document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdp.embedded import EmbeddedPDP
from pdp.engine.wasm import WasmEngine, _go_sprintf
from pdp.intents import validate_intent
from tests.conftest import EXAMPLES, ROOT

RESULT = "gpupaas/decision/result"


def both(stack: EmbeddedPDP, wasm_stack: EmbeddedPDP, intent: Any, path: str = RESULT) -> tuple[Any, Any]:
    assert stack.engine is not None and wasm_stack.engine is not None
    return (
        stack.engine.evaluate(path, intent, timeout=5),
        wasm_stack.engine.evaluate(path, intent, timeout=5),
    )


def corpus() -> list[Any]:
    intents: list[Any] = [json.loads(p.read_text()) for p in sorted((EXAMPLES / "intents").glob("*.json"))]
    for path in sorted((ROOT / "policies").glob("**/samples/*.json")):
        intents.append(json.loads(path.read_text())[path.stem]["input"])
    eu = {"topology.kubernetes.io/region": "eu-west-1", "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    intents += [
        {
            "kind": "preempt",
            "tenant": "acme-eu",
            "preempt": {
                "victims": [
                    {"tenant": "initech-spot", "workload": "a"},
                    {"tenant": "globex", "workload": "b"},
                ]
            },
        },
        {
            "kind": "update_quotas",
            "tenant": "globex",
            "usage": {"H100-80GB": 6},
            "update_quotas": {"entitlements": {"H100-80GB": 4, "MI300X": 2}},
        },
        {
            "kind": "change_batch_size",
            "tenant": "acme-eu",
            "change_batch_size": {"deployment": "x", "batch_size": 64},
        },
        {
            "kind": "place_workload",
            "place_workload": {
                "namespace": "acme-prod",
                "name": "p",
                "resources": {"nvidia.com/gpu": 2},
                "nodes": [
                    {
                        "name": "a",
                        "labels": {**eu, "gpupaas.io/dedicated-tenant": "acme-eu"},
                        "namespaces": ["acme-prod"],
                    },
                    {"name": "b", "labels": eu, "namespaces": ["globex-ml"]},
                    {
                        "name": "c",
                        "labels": {**eu, "gpupaas.io/dedicated-tenant": "acme-eu"},
                        "tenants": ["globex"],
                    },
                    {"name": "d"},
                ],
            },
        },
        {
            "kind": "admit_workload",
            "admit_workload": {
                "namespace": "globex-ml",
                "name": "p",
                "resources": {"nvidia.com/mig-1g.5gb": 1, "amd.com/gpu": 2},
                "node_affinity": [
                    [
                        {
                            "key": "topology.kubernetes.io/region",
                            "operator": "In",
                            "values": ["us-east-1", "cn-1"],
                        }
                    ]
                ],
                "tolerations": [{"operator": "Exists"}],
                "priority_class_name": "system-cluster-critical",
            },
        },
    ]
    return intents


CORPUS = corpus()


@pytest.mark.parametrize("index", range(len(CORPUS)))
def test_corpus_decides_identically(stack: EmbeddedPDP, wasm_stack: EmbeddedPDP, index: int) -> None:
    intent = CORPUS[index]
    validate_intent(intent)
    sidecar, in_process = both(stack, wasm_stack, intent)
    assert in_process == sidecar


def test_one_revision_and_identical_batches(stack: EmbeddedPDP, wasm_stack: EmbeddedPDP) -> None:
    assert stack.bundle is not None and wasm_stack.bundle is not None
    assert stack.bundle.revision == wasm_stack.bundle.revision
    sidecar, in_process = both(stack, wasm_stack, {"intents": CORPUS}, "gpupaas/decision/batch")
    assert in_process == sidecar
    assert {d["bundle_revision"] for d in in_process} == {stack.bundle.revision}


names = st.sampled_from(["acme-eu", "globex", "initech-spot", "nobody"])
classes = st.sampled_from(["H100-80GB", "A100-40GB", "MI300X", "B200"])
namespaces = st.sampled_from(["acme-prod", "globex-ml", "initech-batch", "unowned"])
regions = st.sampled_from(["eu-west-1", "eu-central-1", "us-east-1", "ap-south-1"])
products = st.sampled_from(
    ["NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-40GB-SHARED", "AMD_Instinct_MI300X_OAM", "x"]
)
counts = st.integers(0, 40)

deploy = st.fixed_dictionaries(
    {
        "kind": st.just("deploy_model"),
        "tenant": names,
        "usage": st.dictionaries(classes, counts, max_size=2),
        "deploy_model": st.fixed_dictionaries(
            {
                "deployment": st.just("d"),
                "gpu_class": classes,
                "gpus_per_replica": st.integers(1, 8),
                "replicas": st.integers(1, 8),
            },
            optional={
                "sharing": st.sampled_from(["none", "time-slicing", "mps", "mig"]),
                "cluster": st.sampled_from(["eu-west", "eu-central", "us-east", "nowhere"]),
                "batch_size": st.integers(1, 128),
            },
        ),
    }
)
node = st.fixed_dictionaries(
    {"name": st.from_regex(r"n[0-9]{1,3}", fullmatch=True)},
    optional={
        "labels": st.fixed_dictionaries(
            {},
            optional={
                "topology.kubernetes.io/region": regions,
                "nvidia.com/gpu.product": products,
                "nvidia.com/gpu.sharing-strategy": st.sampled_from(["none", "time-slicing", "mps"]),
                "gpupaas.io/dedicated-tenant": names,
            },
        ),
        "namespaces": st.lists(namespaces, max_size=2),
        "tenants": st.lists(names, max_size=2),
    },
)
workload = st.fixed_dictionaries(
    {"namespace": namespaces, "name": st.just("w")},
    optional={
        "resources": st.dictionaries(
            st.sampled_from(
                ["nvidia.com/gpu", "amd.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-1g.10gb"]
            ),
            counts,
            max_size=2,
        ),
        "node_selector": st.dictionaries(
            st.sampled_from(
                ["topology.kubernetes.io/region", "nvidia.com/gpu.product", "gpupaas.io/dedicated-tenant"]
            ),
            st.one_of(regions, products, names),
            max_size=2,
        ),
        "tolerations": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "key": st.sampled_from(["gpupaas.io/dedicated", "other"]),
                    "operator": st.sampled_from(["Equal", "Exists"]),
                    "value": names,
                    "effect": st.sampled_from(["NoSchedule", "NoExecute"]),
                },
            ),
            max_size=2,
        ),
        "priority_class_name": st.sampled_from(
            ["gpupaas-enterprise", "gpupaas-standard", "gpupaas-spot", "other"]
        ),
    },
)
admit = st.fixed_dictionaries({"kind": st.just("admit_workload"), "admit_workload": workload})
place = st.builds(
    lambda w, nodes: {"kind": "place_workload", "place_workload": {**w, "nodes": nodes}},
    workload,
    st.lists(node, max_size=6, unique_by=lambda n: n["name"]),
)
scale = st.fixed_dictionaries(
    {
        "kind": st.just("scale"),
        "tenant": names,
        "usage": st.dictionaries(classes, counts, max_size=2),
        "scale": st.fixed_dictionaries(
            {
                "deployment": st.just("d"),
                "gpu_class": classes,
                "gpus_per_replica": st.integers(1, 8),
                "current_replicas": counts,
                "target_replicas": counts,
            }
        ),
    }
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(intent=st.one_of(deploy, admit, place, scale))
def test_generated_intents_decide_identically(
    stack: EmbeddedPDP, wasm_stack: EmbeddedPDP, intent: Any
) -> None:
    validate_intent(intent)
    sidecar, in_process = both(stack, wasm_stack, intent)
    assert in_process == sidecar


@pytest.mark.parametrize(
    ("fmt", "args", "expected"),
    [
        ("%s has %d GPUs", ["acme", 4], "acme has 4 GPUs"),
        ("%d%%", [50], "50%"),
        ("[%s] %v", [["a", "b"], {"k": 1}], '[["a", "b"]] {"k": 1}'),
        ("%v and %s", [True, 2.0], "true and 2"),
    ],
)
def test_host_sprintf_follows_go(fmt: str, args: list[Any], expected: str) -> None:
    assert _go_sprintf(fmt, args) == expected


def test_wasm_engine_refuses_a_bundle_without_a_module(tmp_path: Path) -> None:
    import tarfile

    from pdp.engine import NoActiveBundle

    path = tmp_path / "rego-only.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("data.json")
        info.size = 2
        import io

        tar.addfile(info, io.BytesIO(b"{}"))
    with pytest.raises(NoActiveBundle):
        WasmEngine.from_tarball(path)

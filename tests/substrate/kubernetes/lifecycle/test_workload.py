"""Workload objects rendered from placement decisions (pure), and checked against the platform's
own admission: the Deployment the lifecycle applies is one the PDP admits."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pdp.embedded import EmbeddedPDP
from pdp.substrate.kubernetes import workload
from pdp.substrate.kubernetes.adapter import object_path
from pdp.substrate.kubernetes.enforcement.workloads import workload_from_object
from tests.lifecycle.harness import EXAMPLES

FLEET = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
# The shape of a deploy_model decision's constraints for the dedicated EU tenant (decision contract).
ACME = {
    "eligible_clusters": ["eu-west"],
    "node_selector": {
        "gpupaas.io/dedicated-tenant": "acme-eu",
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    },
    "node_affinity": [{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]}],
    "tolerations": [
        {"key": "gpupaas.io/dedicated", "operator": "Equal", "value": "acme-eu", "effect": "NoSchedule"}
    ],
    "priority_class_name": "gpupaas-enterprise",
    "isolation": {"mode": "dedicated", "gpu_sharing": False, "dedicated_pools": ["acme-h100-dedicated"]},
}
SPEC = {"deployment": "llm", "gpu_class": "H100-80GB", "gpus_per_replica": 2, "replicas": 3, "batch_size": 16}


def _affinity(obj: dict[str, Any]) -> list[dict[str, Any]]:
    node = obj["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    [term] = node["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return term["matchExpressions"]  # type: ignore[no-any-return]


def test_dedicated_deployment_carries_the_decision() -> None:
    place = workload.placement(ACME, FLEET, "none")
    obj = workload.render(
        "acme-eu", "acme-prod", SPEC, place, FLEET, decision_id="d-1", bundle_revision="r-1"
    )
    assert object_path(obj) == "/apis/apps/v1/namespaces/acme-prod/deployments/llm"
    labels = {"gpupaas.io/tenant": "acme-eu", "gpupaas.io/deployment": "llm"}
    assert obj["metadata"]["labels"] == {**labels, "kueue.x-k8s.io/queue-name": "default"}
    assert obj["metadata"]["annotations"] == {
        "gpupaas.io/eligible-clusters": "eu-west",
        "gpupaas.io/placement-decision": "d-1",
        "gpupaas.io/placement-bundle-revision": "r-1",
    }
    spec = obj["spec"]
    assert spec["replicas"] == 3 and spec["selector"]["matchLabels"] == labels
    pod = spec["template"]["spec"]
    assert pod["priorityClassName"] == "gpupaas-enterprise"
    assert pod["nodeSelector"] == ACME["node_selector"]
    assert pod["tolerations"] == ACME["tolerations"]
    assert _affinity(obj) == [
        {"key": "gpupaas.io/pool", "operator": "In", "values": ["acme-h100-dedicated"]},
        {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]},
    ]
    [container] = pod["containers"]
    assert container["resources"] == {"requests": {"nvidia.com/gpu": "2"}, "limits": {"nvidia.com/gpu": "2"}}
    assert container["image"] == "vllm/vllm-openai:v0.11.0" and container["command"] == ["vllm", "serve"]
    args = container["args"]
    assert args[0] == "llm" and args[args.index("--max-num-seqs") + 1] == "16"
    assert args[args.index("--tensor-parallel-size") + 1] == "2"
    # Not running (preempted): the same object at 0 replicas, so it can be resumed.
    idle = workload.render("acme-eu", "acme-prod", SPEC, place, FLEET, running=False)
    assert idle["spec"]["replicas"] == 0 and idle["spec"]["template"] == spec["template"]


def test_shared_tenant_is_pinned_to_the_regions_of_its_eligible_clusters_and_sharing_mode() -> None:
    constraints = {
        "eligible_clusters": ["eu-west", "us-east"],
        "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"},
        "node_affinity": [{"key": "gpupaas.io/dedicated-tenant", "operator": "DoesNotExist"}],
        "priority_class_name": "gpupaas-standard",
        "isolation": {"mode": "shared", "dedicated_pools": []},
    }
    spec = {"deployment": "tune", "gpu_class": "A100-40GB", "gpus_per_replica": 1, "replicas": 2}
    sliced = workload.render(
        "globex", "globex-ml", spec, workload.placement(constraints, FLEET, "time-slicing"), FLEET
    )
    assert _affinity(sliced) == [
        {"key": "gpupaas.io/dedicated-tenant", "operator": "DoesNotExist"},
        {"key": "nvidia.com/gpu.sharing-strategy", "operator": "In", "values": ["time-slicing"]},
        {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1", "us-east-1"]},
    ]
    # GPU feature discovery renames the product of time-sliced nodes.
    pod = sliced["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-SHARED"}
    assert "tolerations" not in pod
    mig = workload.placement({**constraints, "eligible_clusters": ["us-east"]}, FLEET, "mig")
    assert workload.placement(constraints, FLEET, "time-slicing") != mig
    assert _affinity(workload.render("globex", "globex-ml", spec, mig, FLEET))[1:] == [
        {"key": "nvidia.com/mig.strategy", "operator": "In", "values": ["mixed", "single"]},
        {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["us-east-1"]},
    ]


def test_fresh_placement_intent_moves_the_deployment_without_counting_it_twice() -> None:
    intent = workload.deploy_intent("acme-eu", SPEC, {"H100-80GB": 8, "A100-40GB": 1}, "sla", "mps")
    assert intent["usage"] == {"H100-80GB": 2, "A100-40GB": 1}
    assert intent["deploy_model"] == {**SPEC, "sharing": "mps"}


@pytest.mark.parametrize(
    ("tenant", "namespace", "spec"),
    [
        ("acme-eu", "acme-prod", {**SPEC, "replicas": 1}),
        (
            "globex",
            "globex-ml",
            {
                "deployment": "t",
                "gpu_class": "A100-40GB",
                "gpus_per_replica": 1,
                "replicas": 2,
                "sharing": "time-slicing",
            },
        ),
        (
            "initech-spot",
            "initech-batch",
            {
                "deployment": "b",
                "gpu_class": "A100-40GB",
                "gpus_per_replica": 4,
                "replicas": 2,
                "sharing": "mig",
            },
        ),
    ],
)
def test_the_rendered_deployment_is_admitted_by_the_platform(
    stack: EmbeddedPDP, tenant: str, namespace: str, spec: dict[str, Any]
) -> None:
    placed = stack.point.decide({"kind": "deploy_model", "tenant": tenant, "deploy_model": spec}).to_dict()
    assert placed["outcome"] == "ALLOW", placed
    place = workload.placement(placed["constraints"], FLEET, str(spec.get("sharing", "none")))
    obj = workload.render(tenant, namespace, spec, place, FLEET)
    admitted = stack.point.decide(
        {"kind": "admit_workload", "admit_workload": workload_from_object(obj, namespace)}
    ).to_dict()
    assert admitted["outcome"] == "ALLOW" and admitted["warnings"] == [], admitted

"""Workload objects as admit_workload payloads (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from pdp.intents import validate_intent
from pdp.substrate.kubernetes.enforcement.workloads import (
    InvalidObject,
    UnsupportedObject,
    asks_for_gpus,
    crosses_constraints,
    gpu_requests,
    needs_policy,
    pod_spec_of,
    workload_from_object,
)
from tests.substrate.kubernetes.enforcement.conftest import pod

SPEC = pod(limits={"nvidia.com/gpu": "2"})["spec"]


def wrap(kind: str, spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "w"}, "spec": {"template": {"spec": spec}, **extra}}


@pytest.mark.parametrize(
    ("obj", "replicas"),
    [
        (pod(limits={"nvidia.com/gpu": 2}), 1),
        (wrap("Deployment", SPEC, replicas=3), 3),
        (wrap("Deployment", SPEC), 1),
        (wrap("StatefulSet", SPEC, replicas=2), 2),
        (wrap("ReplicaSet", SPEC, replicas=0), 0),
        (wrap("ReplicationController", SPEC, replicas=4), 4),
        (wrap("DaemonSet", SPEC), 1),
        (wrap("Job", SPEC, parallelism=5), 5),
        (wrap("Job", SPEC), 1),
        (
            {
                "kind": "CronJob",
                "spec": {"jobTemplate": {"spec": {"parallelism": 2, "template": {"spec": SPEC}}}},
            },
            2,
        ),
    ],
)
def test_pod_spec_and_replicas_of_every_kind(obj: dict[str, Any], replicas: int) -> None:
    spec, n = pod_spec_of(obj)
    assert n == replicas
    assert gpu_requests(spec) == {"nvidia.com/gpu": 2}


def test_unknown_kinds_are_unsupported() -> None:
    with pytest.raises(UnsupportedObject):
        pod_spec_of({"kind": "Service", "spec": {}})


def test_effective_request_is_max_of_containers_sum_and_init_max() -> None:
    spec = {
        "containers": [
            {"resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}},
            {"resources": {"requests": {"nvidia.com/gpu": 2, "nvidia.com/mig-1g.10gb": "1"}}},
            {"resources": {"limits": {"cpu": "500m", "memory": "1.5Gi"}}},
        ],
        "initContainers": [
            {"resources": {"limits": {"nvidia.com/gpu": "4"}}},
            {"resources": {"limits": {"amd.com/gpu": "1", "nvidia.com/mig-1g.10gb": "0"}}},
        ],
    }
    assert gpu_requests(spec) == {"amd.com/gpu": 1, "nvidia.com/gpu": 4, "nvidia.com/mig-1g.10gb": 1}


def test_limits_and_requests_count_their_maximum() -> None:
    spec = {
        "containers": [
            {"resources": {"limits": {"nvidia.com/gpu": "3"}, "requests": {"nvidia.com/gpu": "1"}}}
        ]
    }
    assert gpu_requests(spec) == {"nvidia.com/gpu": 3}


@pytest.mark.parametrize("value", ["1.5", "500m", "1Gi", 1.5, True, "", None, [1]])
def test_fractional_or_odd_gpu_quantities_are_invalid_with_the_path(value: Any) -> None:
    spec = {"containers": [{"resources": {"limits": {"nvidia.com/gpu": value}}}]}
    with pytest.raises(InvalidObject) as raised:
        gpu_requests(spec)
    assert raised.value.field == 'spec.containers[0].resources.limits["nvidia.com/gpu"]'


def test_the_message_names_the_container_and_the_resource() -> None:
    spec = {"containers": [{}, {"resources": {"requests": {"nvidia.com/gpu.shared": "1.5"}}}]}
    with pytest.raises(InvalidObject) as raised:
        gpu_requests(spec)
    assert (
        str(raised.value)
        == 'spec.containers[1].resources.requests["nvidia.com/gpu.shared"]: "1.5" is not a whole number'
    )


def test_workload_payload_is_a_valid_admit_workload_intent() -> None:
    obj = wrap(
        "Deployment",
        {
            **SPEC,
            "nodeSelector": {"topology.kubernetes.io/region": "eu-west-1"},
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["A", "B"]},
                                    {"key": "gpupaas.io/dedicated-tenant", "operator": "DoesNotExist"},
                                ],
                                "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}],
                            },
                            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
                        ]
                    }
                }
            },
            "tolerations": [{"key": "gpupaas.io/dedicated", "operator": "Equal", "value": "acme-eu"}],
            "priorityClassName": "gpupaas-enterprise",
        },
        replicas=3,
    )
    workload = workload_from_object(obj, "acme-prod")
    assert workload == {
        "namespace": "acme-prod",
        "name": "w",
        "kind": "Deployment",
        "resources": {"nvidia.com/gpu": 6},
        "node_selector": {"topology.kubernetes.io/region": "eu-west-1"},
        "node_affinity": [
            [
                {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["A", "B"]},
                {"key": "gpupaas.io/dedicated-tenant", "operator": "DoesNotExist"},
                {"key": "metadata.name", "operator": "In", "values": ["n1"]},
            ],
            # matchFields name nodes: a DaemonSet pod's way, or anyone's, to one node
            [{"key": "metadata.name", "operator": "In", "values": ["n1"]}],
        ],
        "tolerations": [{"key": "gpupaas.io/dedicated", "operator": "Equal", "value": "acme-eu"}],
        "priority_class_name": "gpupaas-enterprise",
    }
    validate_intent({"kind": "admit_workload", "admit_workload": workload})


def test_empty_fields_are_omitted_and_names_fall_back() -> None:
    plain = {"kind": "Pod", "metadata": {"generateName": "job-"}, "spec": {"containers": [{"name": "c"}]}}
    assert workload_from_object(plain, "ns") == {"namespace": "ns", "name": "job-", "kind": "Pod"}
    unnamed = {"kind": "Pod", "spec": {"containers": []}}
    assert workload_from_object(unnamed, "ns")["name"] == "(unnamed)"


def test_bad_structure_names_the_field() -> None:
    with pytest.raises(InvalidObject, match=r"spec.tolerations\[0\].operator"):
        workload_from_object(pod(tolerations=[{"key": "k", "operator": "Maybe"}]), "ns")
    with pytest.raises(InvalidObject, match=r"spec.nodeSelector"):
        workload_from_object({"kind": "Pod", "spec": {"nodeSelector": {"a": 1}}}, "ns")
    with pytest.raises(InvalidObject, match=r"spec.replicas"):
        workload_from_object(wrap("Deployment", SPEC, replicas="3"), "ns")


@pytest.mark.parametrize(
    ("obj", "gpus", "crosses"),
    [
        (pod(), False, False),
        (pod(limits={"nvidia.com/gpu": "1"}), True, False),
        (pod(limits={"nvidia.com/gpu": "0"}), False, False),
        (pod(limits={"example.com/fpga": "1"}), False, False),
        (pod(node_selector={"kubernetes.io/os": "linux"}), False, False),
        (pod(node_selector={"topology.kubernetes.io/region": "eu-west-1"}), False, True),
        (pod(node_selector={"nvidia.com/gpu.product": "x"}), False, True),
        (pod(node_selector={"amd.com/gpu.product-name": "x"}), False, True),
        (pod(tolerations=[{"key": "gpupaas.io/dedicated", "operator": "Exists"}]), False, True),
        (pod(tolerations=[{"operator": "Exists"}]), False, True),
        (pod(tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]), False, False),
        (pod(priority_class="gpupaas-spot"), False, True),
        (pod(priority_class="system-node-critical"), False, False),
    ],
)
def test_which_workloads_need_policy(obj: dict[str, Any], gpus: bool, crosses: bool) -> None:
    workload = workload_from_object(obj, "ns")
    assert asks_for_gpus(workload) is gpus
    assert crosses_constraints(workload) is crosses
    assert needs_policy(workload) is (gpus or crosses)


def test_node_affinity_keys_cross_constraints() -> None:
    obj = pod()
    obj["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "gpupaas.io/pool", "operator": "In", "values": ["p"]}]}
                ]
            }
        }
    }
    assert crosses_constraints(workload_from_object(obj, "ns"))

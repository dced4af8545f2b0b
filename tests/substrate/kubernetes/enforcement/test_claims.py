"""Dynamic Resource Allocation claims: their GPU device classes as the resources the policies know,
judged by the webhook with the real OPA (before, no claim reached the policy)."""

from __future__ import annotations

from typing import Any

import pytest

from pdp.point import DecisionPoint
from pdp.substrate.kubernetes.enforcement.claims import claim_workload, gpu_devices
from pdp.substrate.kubernetes.enforcement.webhook import AdmissionWebhook
from pdp.substrate.kubernetes.enforcement.workloads import InvalidObject
from tests.substrate.kubernetes.enforcement.conftest import CountingEngine, body, review


def request(device_class: str, count: int | None = None, **extra: Any) -> dict[str, Any]:
    exactly: dict[str, Any] = {"deviceClassName": device_class, **extra}
    if count is not None:
        exactly["count"] = count
    return {"name": "r", "exactly": exactly}


def template(*requests: dict[str, Any], name: str = "gpus") -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name},
        "spec": {"spec": {"devices": {"requests": list(requests)}}},
    }


def claim(*requests: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": "shared-gpu"},
        "spec": {"devices": {"requests": list(requests)}},
    }


def test_gpu_device_classes_become_gpu_resources() -> None:
    spec = {
        "devices": {
            "requests": [
                request("gpu.nvidia.com", 2),
                request("gpu.nvidia.com"),  # count defaults to 1
                request("mig.nvidia.com", 3),
                request("gpu.amd.com", 1),
                request("nic.example.com", 4),
                {
                    "name": "any-of",
                    "firstAvailable": [
                        {"name": "big", "deviceClassName": "gpu.nvidia.com", "count": 4},
                        {"name": "small", "deviceClassName": "gpu.nvidia.com", "count": 1},
                    ],
                },
                {"name": "v1beta1", "deviceClassName": "gpu.amd.com", "count": 2},
            ]
        }
    }
    assert gpu_devices(spec, "spec") == {"amd.com/gpu": 3, "nvidia.com/gpu": 7, "nvidia.com/gpu.shared": 3}


def test_a_claim_without_gpus_asks_for_nothing() -> None:
    assert claim_workload(claim(request("nic.example.com", 2)), "ns") == {
        "namespace": "ns",
        "name": "shared-gpu",
        "kind": "ResourceClaim",
    }


@pytest.mark.parametrize(
    ("exactly", "field"),
    [
        ({"allocationMode": "All"}, "spec.spec.devices.requests[0].exactly.allocationMode"),
        ({"count": 0}, "spec.spec.devices.requests[0].exactly.count"),
        ({"count": "2"}, "spec.spec.devices.requests[0].exactly.count"),
        ({"count": True}, "spec.spec.devices.requests[0].exactly.count"),
    ],
)
def test_unbounded_or_odd_gpu_counts_are_invalid_with_the_path(exactly: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidObject) as raised:
        claim_workload(
            template({"name": "r", "exactly": {"deviceClassName": "gpu.nvidia.com", **exactly}}), "ns"
        )
    assert raised.value.field == field


def test_malformed_claims_name_the_field() -> None:
    with pytest.raises(InvalidObject) as raised:
        claim_workload(template({"name": "r", "exactly": {"deviceClassName": 7}}), "ns")
    assert raised.value.field == "spec.spec.devices.requests[0].exactly.deviceClassName"
    with pytest.raises(InvalidObject) as raised:
        claim_workload({"kind": "ResourceClaim", "spec": {"devices": {"requests": "all"}}}, "ns")
    assert raised.value.field == "spec.devices.requests"


@pytest.fixture()
def webhook(point: DecisionPoint) -> AdmissionWebhook:
    return AdmissionWebhook(point)


def decide(webhook: AdmissionWebhook, obj: dict[str, Any], namespace: str) -> Any:
    doc = review(obj, namespace)
    doc["request"]["resource"] = {
        "group": "resource.k8s.io",
        "version": "v1",
        "resource": "resourceclaimtemplates",
    }
    return webhook.review(body(doc))["response"]


def test_gpu_claims_meet_tenant_entitlement_and_sharing(webhook: AdmissionWebhook) -> None:
    over = decide(webhook, template(request("gpu.nvidia.com", 8)), "acme-prod")
    assert over["allowed"] is False and "[ENTITLEMENT_EXCEEDED]" in over["status"]["message"]
    assert "ResourceClaimTemplate acme-prod/gpus" in over["status"]["message"]
    within = decide(webhook, template(request("gpu.nvidia.com", 4)), "acme-prod")
    assert within["allowed"] is True and "warnings" not in within
    unowned = decide(webhook, claim(request("gpu.nvidia.com", 1)), "unowned")
    assert unowned["allowed"] is False and "[TENANT_UNKNOWN]" in unowned["status"]["message"]
    mig = decide(webhook, template(request("mig.nvidia.com", 1)), "acme-prod")
    assert mig["allowed"] is False and "[SHARING_NOT_ALLOWED]" in mig["status"]["message"]
    amd = decide(webhook, template(request("gpu.amd.com", 1)), "acme-prod")
    assert amd["allowed"] is False and "[GPU_CLASS_NOT_ENTITLED]" in amd["status"]["message"]


def test_claims_of_other_devices_pass_without_an_engine_call(
    webhook: AdmissionWebhook, counting: CountingEngine
) -> None:
    assert decide(webhook, template(request("nic.example.com", 2)), "unowned")["allowed"] is True
    assert counting.calls == 0


def test_an_unbounded_gpu_claim_is_a_reasoned_denial(webhook: AdmissionWebhook) -> None:
    response = decide(webhook, template(request("gpu.nvidia.com", allocationMode="All")), "globex-ml")
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert "'All' is not allowed for GPU device class gpu.nvidia.com" in response["status"]["message"]

"""Paths around the policy the webhook once let through (issue 10), each refused by the webhook
deciding with the real OPA on the example tenants and fleet. Every test here fails before the fix:
the object was admitted, or admitted for another reason than the policy's."""

from __future__ import annotations

from typing import Any

import pytest

from pdp.point import DecisionPoint
from pdp.substrate.kubernetes.enforcement.webhook import AdmissionWebhook
from tests.substrate.kubernetes.enforcement.conftest import (
    CountingEngine,
    body,
    labels,
    own_pool,
    pod,
    review,
)
from tests.substrate.kubernetes.enforcement.extender.test_scheduler_extender import FakeCluster

DEDICATED = {"key": "gpupaas.io/dedicated", "operator": "Exists", "effect": "NoSchedule"}


def decide(webhook: AdmissionWebhook, obj: dict[str, Any] | None, namespace: str, **kw: Any) -> Any:
    return webhook.review(body(review(obj, namespace, **kw)))["response"]


def denied(response: Any, *codes: str) -> str:
    assert response["allowed"] is False, response
    message: str = response["status"]["message"]
    for code in codes:
        assert f"[{code}]" in message, message
    return message


def gpu_pod(**kw: Any) -> dict[str, Any]:
    return pod(limits={"nvidia.com/gpu": "1"}, **kw)


@pytest.fixture()
def webhook(point: DecisionPoint) -> AdmissionWebhook:
    """The webhook without a view of the cluster: only the bundle's fleet data."""
    return AdmissionWebhook(point)


# ---- default deny for what the webhook cannot classify ----


@pytest.mark.parametrize("operation", [None, "", "PATCH", "create", 7])
def test_a_review_whose_operation_is_missing_or_unknown_is_denied(
    webhook: AdmissionWebhook, counting: CountingEngine, operation: Any
) -> None:
    doc = review(gpu_pod(), "unowned")
    if operation is None:
        del doc["request"]["operation"]
    else:
        doc["request"]["operation"] = operation
    response = webhook.review(body(doc))["response"]
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert "cannot classify Pod unowned/llama-0" in response["status"]["message"]
    assert "request.operation is" in response["status"]["message"]
    assert response["auditAnnotations"] == {"outcome": "UNCLASSIFIED"}
    assert counting.calls == 0


def test_deletions_and_connects_still_pass_without_policy(
    webhook: AdmissionWebhook, counting: CountingEngine
) -> None:
    for operation in ("DELETE", "CONNECT"):
        assert decide(webhook, None, "acme-prod", operation=operation)["allowed"] is True
    assert counting.calls == 0


# ---- residency of named nodes, judged from the fleet data without a cluster view ----


def test_a_pod_naming_a_us_node_is_denied_for_an_eu_tenant_without_a_cluster_view(
    webhook: AdmissionWebhook,
) -> None:
    pinned = gpu_pod(tolerations=own_pool("acme-eu"))
    pinned["spec"]["nodeName"] = "us-shared-1"
    message = denied(decide(webhook, pinned, "acme-prod"), "RESIDENCY_VIOLATION")
    assert 'names node "us-shared-1" (spec.nodeName)' in message and "region us-east-1" in message
    assert "tenant acme-eu" in message


def test_a_hostname_selector_on_a_us_node_is_denied_for_an_eu_tenant(webhook: AdmissionWebhook) -> None:
    pinned = gpu_pod(node_selector={"kubernetes.io/hostname": "us-shared-2"}, tolerations=own_pool("acme-eu"))
    message = denied(decide(webhook, pinned, "acme-prod"), "RESIDENCY_VIOLATION")
    assert 'names node "us-shared-2" (node selector kubernetes.io/hostname)' in message


def test_own_nodes_named_by_hostname_pass(webhook: AdmissionWebhook) -> None:
    pinned = gpu_pod(node_selector={"kubernetes.io/hostname": "eu-acme-2"}, tolerations=own_pool("acme-eu"))
    response = decide(webhook, pinned, "acme-prod")
    assert response["allowed"] is True, response
    assert "warnings" not in response  # a named node pins the region


def test_not_in_affinity_that_admits_us_regions_is_denied(webhook: AdmissionWebhook) -> None:
    obj = gpu_pod(tolerations=own_pool("acme-eu"))
    obj["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "topology.kubernetes.io/region",
                                "operator": "NotIn",
                                "values": ["eu-west-1"],
                            }
                        ]
                    }
                ]
            }
        }
    }
    message = denied(decide(webhook, obj, "acme-prod"), "RESIDENCY_VIOLATION")
    assert "excludes regions [eu-west-1] only, so it admits regions [us-east-1]" in message


# ---- pools selected by name ----


def test_a_pool_selector_naming_another_tenants_dedicated_pool_is_denied(webhook: AdmissionWebhook) -> None:
    obj = gpu_pod(node_selector={"gpupaas.io/pool": "acme-h100-dedicated"})
    message = denied(decide(webhook, obj, "globex-ml"), "ISOLATION_FOREIGN_POOL")
    assert "pools [acme-h100-dedicated]" in message


# ---- workloads of any namespace that reach a dedicated pool ----


def test_a_non_gpu_pod_in_default_reaching_a_dedicated_pool_is_decided_by_isolation(
    webhook: AdmissionWebhook,
) -> None:
    obj = pod(tolerations=[DEDICATED], node_selector={"gpupaas.io/pool": "acme-h100-dedicated"})
    message = denied(decide(webhook, obj, "default"), "ISOLATION_FOREIGN_POOL")
    assert "TENANT_UNKNOWN" not in message
    assert 'namespace "default" belongs to no tenant' in message


def test_a_non_gpu_pod_in_default_naming_a_dedicated_node_is_denied(webhook: AdmissionWebhook) -> None:
    obj = pod()
    obj["spec"]["nodeName"] = "eu-acme-1"
    message = denied(decide(webhook, obj, "default"), "ISOLATION_FOREIGN_POOL")
    assert 'names node "eu-acme-1" (spec.nodeName)' in message and 'tenant "acme-eu"' in message


def test_a_daemonset_pod_naming_a_dedicated_node_by_match_fields_is_denied(webhook: AdmissionWebhook) -> None:
    obj = pod()
    obj["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["eu-acme-2"]}]}
                ]
            }
        }
    }
    message = denied(decide(webhook, obj, "monitoring"), "ISOLATION_FOREIGN_POOL")
    assert 'names node "eu-acme-2" (node affinity term 0)' in message


def test_a_non_gpu_pod_in_default_on_shared_nodes_passes(webhook: AdmissionWebhook) -> None:
    obj = pod(
        node_selector={"topology.kubernetes.io/region": "us-east-1", "gpupaas.io/pool": "us-h100-shared"}
    )
    obj["spec"]["nodeName"] = "us-shared-3"
    assert decide(webhook, obj, "default")["allowed"] is True


# ---- Dynamic Resource Allocation ----


def dra_pod(**kw: Any) -> dict[str, Any]:
    obj = pod(**kw)
    obj["spec"]["resourceClaims"] = [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}]
    obj["spec"]["containers"][0]["resources"] = {"claims": [{"name": "gpu"}]}
    return obj


def test_a_pod_claiming_devices_in_a_namespace_no_tenant_owns_is_denied(webhook: AdmissionWebhook) -> None:
    denied(decide(webhook, dra_pod(), "unowned"), "TENANT_UNKNOWN")


def test_a_pod_claiming_devices_must_pin_region_and_pool(webhook: AdmissionWebhook) -> None:
    message = denied(
        decide(webhook, dra_pod(), "acme-prod"), "RESIDENCY_UNCONSTRAINED", "ISOLATION_SHARED_POOL"
    )
    assert "resourceClaims [gpu]" in message
    pinned = dra_pod(
        node_selector={
            "topology.kubernetes.io/region": "eu-west-1",
            "gpupaas.io/dedicated-tenant": "acme-eu",
        },
        tolerations=own_pool("acme-eu"),
    )
    assert decide(webhook, pinned, "acme-prod")["allowed"] is True


def test_an_engine_failure_on_a_device_claim_fails_closed_even_open_non_gpu() -> None:
    class Broken:
        def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
            raise RuntimeError("boom")

    webhook = AdmissionWebhook(DecisionPoint(Broken()), failure_mode="open-non-gpu")
    denied(decide(webhook, dra_pod(), "globex-ml"), "ENGINE_ERROR")


# ---- with a cluster view: the named nodes as the cluster has them ----


def test_with_a_cluster_view_hostname_named_nodes_are_judged_by_their_labels(point: DecisionPoint) -> None:
    view = FakeCluster(
        {
            "ghost-us": labels("us-east-1", "us-h100-shared"),
            "ghost-eu": labels("eu-west-1", "acme-h100-dedicated", "acme-eu"),
        },
        {},
    )
    webhook = AdmissionWebhook(point, cluster=view)
    obj = gpu_pod(tolerations=own_pool("acme-eu"))
    obj["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/hostname",
                                "operator": "In",
                                "values": ["ghost-eu", "ghost-us"],
                            }
                        ]
                    }
                ]
            }
        }
    }
    message = denied(decide(webhook, obj, "acme-prod"), "RESIDENCY_VIOLATION")
    assert (
        'names node "ghost-us" (node affinity term 0), which by its labels is in region us-east-1' in message
    )
    obj["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ][0]["matchExpressions"][0]["values"] = ["ghost-eu"]
    assert decide(webhook, obj, "acme-prod")["allowed"] is True

"""The Kueue objects rendered from the example fleet and tenants (pure)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from pdp.substrate import tenant_objects
from pdp.substrate.kueue import objects
from pdp.substrate.kueue.version import API_VERSION
from tests.conftest import EXAMPLES

FLEET: dict[str, Any] = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]


def tenant(name: str, **changes: Any) -> dict[str, Any]:
    policy: dict[str, Any] = yaml.safe_load((EXAMPLES / "tenants" / f"{name}.yaml").read_text())["tenant"]
    return {**policy, **changes}


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def test_every_object_uses_the_storage_version_of_the_pinned_kueue() -> None:
    rendered = objects.platform(FLEET) + objects.tenant_objects(tenant("globex"), FLEET)
    assert {o["apiVersion"] for o in rendered} == {"kueue.x-k8s.io/v1beta2"} == {API_VERSION}


def test_the_platform_has_a_shared_flavor_per_gpu_class_a_cohort_tree_and_the_check() -> None:
    platform = objects.platform(FLEET)
    flavors = {f["metadata"]["name"]: f["spec"] for f in by_kind(platform, "ResourceFlavor")}
    assert flavors == {
        "gpupaas-a100-40gb-shared": {"nodeLabels": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}},
        "gpupaas-h100-80gb-shared": {"nodeLabels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        "gpupaas-mi300x-shared": {"nodeLabels": {"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"}},
    }
    cohorts = {c["metadata"]["name"]: c["spec"] for c in by_kind(platform, "Cohort")}
    assert cohorts == {
        "gpupaas": {},
        "gpupaas-enterprise": {"parentName": "gpupaas"},
        "gpupaas-standard": {"parentName": "gpupaas"},
        "gpupaas-spot": {"parentName": "gpupaas"},
    }
    # The policy's priority class names, so PRIORITY_CLASS_ABOVE_TIER judges Kueue jobs as well.
    priorities = {p["metadata"]["name"]: p["value"] for p in by_kind(platform, "WorkloadPriorityClass")}
    assert priorities == {"gpupaas-enterprise": 3000, "gpupaas-standard": 2000, "gpupaas-spot": 1000}
    [check] = by_kind(platform, "AdmissionCheck")
    assert check["metadata"]["name"] == objects.CHECK_NAME and check["spec"] == {
        "controllerName": "gpupaas.io/pdp"
    }
    # Flavors and cohorts exist before anything names them.
    kinds = [o["kind"] for o in platform]
    assert kinds.index("AdmissionCheck") == len(kinds) - 1 and kinds[0] == "ResourceFlavor"


def test_an_enterprise_dedicated_tenant_gets_its_own_flavor_never_lends_and_never_borrows() -> None:
    flavor, cq, *queues = objects.tenant_objects(tenant("acme-eu"), FLEET)
    assert flavor["metadata"]["name"] == "gpupaas-h100-80gb-dedicated-acme-eu"
    assert flavor["metadata"]["labels"]["gpupaas.io/tenant"] == "acme-eu"
    assert flavor["spec"] == {
        "nodeLabels": {
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
            "gpupaas.io/dedicated-tenant": "acme-eu",
        },
        "nodeTaints": [{"key": "gpupaas.io/dedicated", "value": "acme-eu", "effect": "NoSchedule"}],
        "tolerations": [
            {"key": "gpupaas.io/dedicated", "operator": "Equal", "value": "acme-eu", "effect": "NoSchedule"}
        ],
    }
    spec = cq["spec"]
    assert cq["metadata"]["name"] == "gpupaas-acme-eu" and spec["cohortName"] == "gpupaas-enterprise"
    assert spec["namespaceSelector"] == {"matchLabels": {"gpupaas.io/tenant": "acme-eu"}}
    assert spec["resourceGroups"] == [
        {
            "coveredResources": ["nvidia.com/gpu"],
            "flavors": [
                {
                    "name": "gpupaas-h100-80gb-dedicated-acme-eu",
                    "resources": [
                        {
                            "name": "nvidia.com/gpu",
                            "nominalQuota": "4",
                            "borrowingLimit": "0",
                            "lendingLimit": "0",
                        }
                    ],
                }
            ],
        }
    ]
    assert spec["preemption"] == {
        "reclaimWithinCohort": "Any",
        "borrowWithinCohort": {"policy": "Never"},
        "withinClusterQueue": "Never",
    }
    assert spec["admissionChecksStrategy"] == {"admissionChecks": [{"name": "gpupaas-pdp"}]}
    assert [(q["metadata"]["namespace"], q["metadata"]["name"], q["spec"]) for q in queues] == [
        ("acme-prod", "default", {"clusterQueue": "gpupaas-acme-eu"}),
        ("acme-staging", "default", {"clusterQueue": "gpupaas-acme-eu"}),
    ]


def test_a_standard_shared_tenant_lends_idle_quota_but_never_borrows() -> None:
    [cq, queue] = objects.tenant_objects(tenant("globex"), FLEET)
    assert cq["spec"]["cohortName"] == "gpupaas-standard"
    [group] = cq["spec"]["resourceGroups"]
    # One resource group for nvidia.com/gpu, its flavors in the fleet's order of GPU classes.
    assert group["flavors"] == [
        {
            "name": "gpupaas-h100-80gb-shared",
            "resources": [{"name": "nvidia.com/gpu", "nominalQuota": "8", "borrowingLimit": "0"}],
        },
        {
            "name": "gpupaas-a100-40gb-shared",
            "resources": [{"name": "nvidia.com/gpu", "nominalQuota": "4", "borrowingLimit": "0"}],
        },
    ]
    assert cq["spec"]["preemption"]["reclaimWithinCohort"] == "Any"
    assert queue["metadata"]["namespace"] == "globex-ml"


def test_a_spot_tenant_borrows_when_it_allows_preemption_and_reclaims_from_nobody() -> None:
    cq = objects.cluster_queue(tenant("initech-spot"), FLEET)
    assert cq["spec"]["cohortName"] == "gpupaas-spot"
    [group] = cq["spec"]["resourceGroups"]
    assert group["flavors"] == [
        {"name": "gpupaas-a100-40gb-shared", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": "16"}]}
    ]
    assert cq["spec"]["preemption"]["reclaimWithinCohort"] == "Never"
    # Borrowed quota is reclaimed by preempting the borrower: without consent, no borrowing.
    refuses = objects.cluster_queue(tenant("initech-spot", allow_preemption=False), FLEET)
    [quota] = refuses["spec"]["resourceGroups"][0]["flavors"][0]["resources"]
    assert quota["borrowingLimit"] == "0"


def test_gpu_classes_of_another_resource_get_their_own_resource_group() -> None:
    policy = tenant("globex", entitlements={"MI300X": 2, "H100-80GB": 1})
    groups = objects.cluster_queue(policy, FLEET)["spec"]["resourceGroups"]
    assert [(g["coveredResources"], [f["name"] for f in g["flavors"]]) for g in groups] == [
        (["amd.com/gpu"], ["gpupaas-mi300x-shared"]),
        (["nvidia.com/gpu"], ["gpupaas-h100-80gb-shared"]),
    ]


@pytest.mark.parametrize("name", ["acme-eu", "globex", "initech-spot"])
def test_the_lifecycle_applies_exactly_the_tenants_kueue_objects(name: str) -> None:
    policy = tenant(name)
    assert tenant_objects.render(policy, FLEET)["kueue"] == objects.tenant_objects(policy, FLEET)
    for obj in objects.tenant_objects(policy, FLEET):
        assert obj["metadata"]["labels"]["gpupaas.io/tenant"] == name

from __future__ import annotations

import yaml

from pdp.substrate import tenant_objects
from pdp.substrate.kubernetes import objects
from pdp.substrate.kubernetes.adapter import object_path
from tests.lifecycle.harness import EXAMPLES


def test_acme_objects_carry_gpu_limits_from_entitlements() -> None:
    policy = yaml.safe_load((EXAMPLES / "tenants" / "acme-eu.yaml").read_text())["tenant"]
    fleet = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
    rendered = tenant_objects.render(policy, fleet)
    assert list(rendered) == list(tenant_objects.GROUPS)
    ns = rendered["namespaces"][0]
    assert ns["metadata"] == {"name": "acme-prod", "labels": {"gpupaas.io/tenant": "acme-eu"}}
    assert rendered["quota"][0]["spec"]["hard"] == {"requests.nvidia.com/gpu": "4"}
    flavor, cq, *queues = rendered["kueue"]
    assert (
        flavor["kind"] == "ResourceFlavor"
        and flavor["metadata"]["name"] == "gpupaas-h100-80gb-dedicated-acme-eu"
    )
    assert cq["kind"] == "ClusterQueue" and cq["spec"]["resourceGroups"][0]["flavors"] == [
        {
            "name": "gpupaas-h100-80gb-dedicated-acme-eu",
            "resources": [
                {"name": "nvidia.com/gpu", "nominalQuota": "4", "borrowingLimit": "0", "lendingLimit": "0"}
            ],
        }
    ]
    assert [q["metadata"]["namespace"] for q in queues] == ["acme-prod", "acme-staging"]
    assert object_path(cq) == "/apis/kueue.x-k8s.io/v1beta2/clusterqueues/gpupaas-acme-eu"
    assert (
        object_path(flavor)
        == "/apis/kueue.x-k8s.io/v1beta2/resourceflavors/gpupaas-h100-80gb-dedicated-acme-eu"
    )
    assert (
        object_path(rendered["quota"][1])
        == "/api/v1/namespaces/acme-staging/resourcequotas/gpupaas-gpu-quota"
    )


def test_a_dedicated_tenant_moving_to_shared_leaves_its_dedicated_flavor_stale() -> None:
    policy = yaml.safe_load((EXAMPLES / "tenants" / "acme-eu.yaml").read_text())["tenant"]
    fleet = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
    dedicated = tenant_objects.render(policy, fleet)
    shared = tenant_objects.render({**policy, "isolation": "shared"}, fleet)
    assert [objects.key(o) for o in objects.stale(dedicated["kueue"], shared["kueue"])] == [
        "ResourceFlavor//gpupaas-h100-80gb-dedicated-acme-eu"
    ]
    assert objects.stale(shared["kueue"], dedicated["kueue"]) == []
    assert objects.stale(dedicated["quota"], shared["quota"]) == []


def test_a_borrowing_tenants_namespaces_leave_room_for_what_it_borrows() -> None:
    policy = yaml.safe_load((EXAMPLES / "tenants" / "initech-spot.yaml").read_text())["tenant"]
    fleet = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
    borrowing = objects.render(policy, fleet)
    assert [q["spec"]["hard"] for q in borrowing["quota"]] == [{}]
    [limit] = borrowing["limits"][0]["spec"]["limits"]
    assert limit["max"] == {} and limit["default"] == limit["defaultRequest"] == {"nvidia.com/gpu": "0"}
    held = objects.render({**policy, "allow_preemption": False}, fleet)
    assert [q["spec"]["hard"] for q in held["quota"]] == [{"requests.nvidia.com/gpu": "16"}]
    assert held["limits"][0]["spec"]["limits"][0]["max"] == {"nvidia.com/gpu": "16"}

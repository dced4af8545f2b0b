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
    no_gpus = {"nvidia.com/gpu": "0", "nvidia.com/gpu.shared": "0"}
    assert limit["max"] == {} and limit["default"] == limit["defaultRequest"] == no_gpus
    held = objects.render({**policy, "allow_preemption": False}, fleet)
    # 16 A100s; the fleet's A100 time-slicing pools split a GPU in 4 (eu) and 2 (us): 16 x 4
    whole_and_shares = {"nvidia.com/gpu": "16", "nvidia.com/gpu.shared": "64"}
    assert [q["spec"]["hard"] for q in held["quota"]] == [
        {f"requests.{r}": n for r, n in whole_and_shares.items()}
    ]
    assert held["limits"][0]["spec"]["limits"][0]["max"] == whole_and_shares


def test_a_sharing_tenants_shares_are_bounded_by_its_entitlement_at_creation() -> None:
    """A pod of GPU shares beyond what the tenant's entitlement can be held as is refused by the
    namespace's quota, as whole GPUs are, not left to kube-scheduler to retry and refuse."""
    policy = yaml.safe_load((EXAMPLES / "tenants" / "globex.yaml").read_text())["tenant"]
    fleet = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
    assert policy["entitlements"] == {"H100-80GB": 8, "A100-40GB": 4}
    # no H100 pool shares its GPUs; the A100s' most-replicated pool splits each in 4
    assert objects.shared_gpu_limit(policy, fleet) == 16
    hard = objects.render(policy, fleet)["quota"][0]["spec"]["hard"]
    assert hard == {"requests.nvidia.com/gpu": "12", "requests.nvidia.com/gpu.shared": "16"}
    # a tenant that may not share gets no share quota (placement refuses its shares outright)
    unshared = objects.render({**policy, "allow_gpu_sharing": False}, fleet)
    assert unshared["quota"][0]["spec"]["hard"] == {"requests.nvidia.com/gpu": "12"}
    # a pool's replicas default to the fleet schema's 4
    pools = fleet["clusters"]["eu-west"]["pools"]
    del pools["eu-a100-timeslice"]["sharing_replicas"]
    pools["eu-a100-timeslice"]["sharing_strategy"] = "mps"
    fleet["clusters"]["us-east"]["pools"]["us-a100-spot"]["sharing_replicas"] = 8
    assert objects.shared_gpu_limit(policy, fleet) == 32
    fleet["clusters"]["us-east"]["pools"]["us-a100-spot"]["sharing_strategy"] = "mig"
    assert objects.shared_gpu_limit(policy, fleet) == 16

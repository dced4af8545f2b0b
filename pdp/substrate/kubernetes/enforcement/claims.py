"""Dynamic Resource Allocation claims as `admit_workload` payloads (pure).

A pod that claims devices names a ResourceClaim or a ResourceClaimTemplate; the devices, and so
whether they are GPUs, are in that object. The webhook judges those objects when they are
created: each request of a GPU device class becomes the extended resource the policies already
know, so a claim meets the same tenant, entitlement and sharing rules as a container limit:

- `gpu.nvidia.com` (NVIDIA's DRA driver, whole GPUs) -> `nvidia.com/gpu`
- `mig.nvidia.com` (MIG slices) -> `nvidia.com/gpu.shared` (a shared GPU: only where the tenant
  allows sharing)
- `gpu.amd.com` (AMD's DRA driver) -> `amd.com/gpu`

A platform that names its GPU DeviceClasses otherwise adds them here and to the CEL list of the
`gpu.claims` webhook in deploy/kubernetes/webhook.yaml (tests/deploy/test_deploy_manifests.py holds both
equal). Device classes outside this map are not GPUs to the platform.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pdp.substrate.kubernetes.enforcement.workloads import InvalidObject, as_list, as_mapping

GPU_DEVICE_CLASSES: Mapping[str, str] = {
    "gpu.nvidia.com": "nvidia.com/gpu",
    "mig.nvidia.com": "nvidia.com/gpu.shared",
    "gpu.amd.com": "amd.com/gpu",
}
CLAIM_KINDS = frozenset({"ResourceClaim", "ResourceClaimTemplate"})
MAX_COUNT = 1 << 20


def is_claim(obj: Mapping[str, Any]) -> bool:
    kind = obj.get("kind")
    return isinstance(kind, str) and kind in CLAIM_KINDS


def _devices(claim_spec: Mapping[str, Any], path: str) -> dict[str, int]:
    """GPU resource -> count a request of one alternative (exactly, or a firstAvailable entry)."""
    device_class = claim_spec.get("deviceClassName")
    if device_class is None:
        return {}
    if not isinstance(device_class, str):
        raise InvalidObject(f"{path}.deviceClassName", "must be a string")
    resource = GPU_DEVICE_CLASSES.get(device_class)
    if resource is None:
        return {}
    mode = claim_spec.get("allocationMode", "ExactCount")
    if mode != "ExactCount":
        # All means every matching device of a node: no count the entitlement could be held to.
        raise InvalidObject(
            f"{path}.allocationMode",
            f"{mode!r} is not allowed for GPU device class {device_class}: ask for a count",
        )
    count = claim_spec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InvalidObject(f"{path}.count", f"{count!r} is not a whole number of devices")
    return {resource: count}


def gpu_devices(spec: Mapping[str, Any], path: str) -> dict[str, int]:
    """The GPU resources a ResourceClaimSpec asks for, summed over its requests. A request with a
    prioritized list (firstAvailable) counts the most of each resource any alternative asks for."""
    devices = as_mapping(spec.get("devices"), f"{path}.devices")
    total: dict[str, int] = {}
    for i, request in enumerate(as_list(devices.get("requests"), f"{path}.devices.requests")):
        rpath = f"{path}.devices.requests[{i}]"
        request = as_mapping(request, rpath)
        alternatives: list[tuple[Mapping[str, Any], str]] = []
        if request.get("exactly") is not None:
            alternatives.append((as_mapping(request["exactly"], f"{rpath}.exactly"), f"{rpath}.exactly"))
        for j, sub in enumerate(as_list(request.get("firstAvailable"), f"{rpath}.firstAvailable")):
            alternatives.append(
                (as_mapping(sub, f"{rpath}.firstAvailable[{j}]"), f"{rpath}.firstAvailable[{j}]")
            )
        if not alternatives:  # resource.k8s.io/v1beta1 puts the class on the request itself
            alternatives.append((request, rpath))
        most: dict[str, int] = {}
        for alternative, apath in alternatives:
            for resource, n in _devices(alternative, apath).items():
                most[resource] = max(most.get(resource, 0), n)
        for resource, n in most.items():
            total[resource] = total.get(resource, 0) + n
    return dict(sorted(total.items()))


def claim_workload(obj: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """The `admit_workload` payload for a ResourceClaim or ResourceClaimTemplate in `namespace`:
    its GPU devices as resources; no placement (the pods that use it carry that)."""
    kind = obj.get("kind")
    spec = as_mapping(obj.get("spec"), "spec")
    if kind == "ResourceClaimTemplate":
        spec, path = as_mapping(spec.get("spec"), "spec.spec"), "spec.spec"
    else:
        path = "spec"
    metadata = as_mapping(obj.get("metadata"), "metadata")
    names = [metadata.get(key) for key in ("name", "generateName")]
    name = next((n for n in names if isinstance(n, str) and n), "(unnamed)")
    workload: dict[str, Any] = {"namespace": namespace, "name": name, "kind": str(kind)}
    resources = gpu_devices(spec, path)
    if resources:
        workload["resources"] = resources
    return workload

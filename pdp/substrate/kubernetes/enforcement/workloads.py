"""Kubernetes workload objects as `admit_workload` payloads (pure).

The translation mirrors what the scheduler will see: the effective GPU request of a pod the way
Kubernetes computes it, times the replicas the controller will create, and the placement knobs
(node selector, required node affinity, tolerations, priority class, a node named outright) the
policies judge. A pod that claims devices through Dynamic Resource Allocation (spec.resourceClaims)
counts as asking for GPUs: the claims live in other objects the object does not show, so unknown
is taken as GPU, the closed side.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

GPU_RESOURCES = frozenset({"nvidia.com/gpu", "amd.com/gpu", "nvidia.com/gpu.shared"})
GPU_RESOURCE_PREFIXES = ("nvidia.com/mig-",)

# Label and toleration keys the platform's policies care about: a workload touching them asks for
# something policy decides even without GPUs (a region, a dedicated pool, a GPU product, a node).
HOSTNAME_LABEL = "kubernetes.io/hostname"
POLICY_KEY_PREFIXES = ("topology.kubernetes.io/", "gpupaas.io/", "nvidia.com/", "amd.com/", HOSTNAME_LABEL)
# How the policies see a matchFields requirement: the only field Kubernetes selects nodes by.
NODE_NAME_FIELD = "metadata.name"
POLICY_TOLERATION_PREFIX = "gpupaas.io/"
POLICY_PRIORITY_PREFIX = "gpupaas-"

SELECTOR_OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"})
TOLERATION_OPERATORS = frozenset({"Equal", "Exists"})

_REPLICATED = frozenset({"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"})
SUPPORTED_KINDS = frozenset({"Pod", "DaemonSet", "Job", "CronJob", *_REPLICATED})

_WHOLE = re.compile(r"^\+?[0-9]+$")


class InvalidObject(ValueError):
    """The object is not a well-formed workload; `field` is the path of the offending value."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class UnsupportedObject(ValueError):
    """An object kind that carries no pod template this module knows."""


def as_mapping(value: Any, path: str, *, required: bool = False) -> Mapping[str, Any]:
    """`value` as an object (absent: empty unless `required`); InvalidObject naming `path` else."""
    if type(value) is dict:  # what JSON gives: skips the Mapping ABC's check, a dozen a review
        return value
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidObject(path, "must be an object")
    return value


def as_list(value: Any, path: str) -> list[Any]:
    """`value` as a list (absent: empty); InvalidObject naming `path` else."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidObject(path, "must be a list")
    return value


def _count(value: Any, path: str, *, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidObject(path, f"{value!r} is not a whole number")
    if value < 0:
        raise InvalidObject(path, f"{value} is negative")
    return value


def pod_spec_of(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any], int]:
    """The pod spec an object runs and how many pods of it run at once."""
    if not isinstance(obj, Mapping):
        raise InvalidObject("(object)", "must be an object")
    kind = obj.get("kind")
    if not isinstance(kind, str) or kind not in SUPPORTED_KINDS:
        raise UnsupportedObject(f"objects of kind {kind!r} carry no pod template gpupaas knows")
    spec = as_mapping(obj.get("spec"), "spec")
    if kind == "Pod":
        return spec, 1
    if kind == "CronJob":
        job = as_mapping(
            as_mapping(spec.get("jobTemplate"), "spec.jobTemplate").get("spec"), "spec.jobTemplate.spec"
        )
        template = as_mapping(job.get("template"), "spec.jobTemplate.spec.template")
        pod = as_mapping(template.get("spec"), "spec.jobTemplate.spec.template.spec")
        return pod, _count(job.get("parallelism"), "spec.jobTemplate.spec.parallelism", default=1)
    pod = as_mapping(as_mapping(spec.get("template"), "spec.template").get("spec"), "spec.template.spec")
    if kind == "Job":
        return pod, _count(spec.get("parallelism"), "spec.parallelism", default=1)
    if kind == "DaemonSet":
        # One pod per node; how many nodes is the scheduler's business, placement judges each.
        return pod, 1
    return pod, _count(spec.get("replicas"), "spec.replicas", default=1)


def is_gpu_resource(name: str) -> bool:
    return name in GPU_RESOURCES or name.startswith(GPU_RESOURCE_PREFIXES)


def _quantity(value: Any, path: str) -> int:
    # Kubernetes only accepts integers for extended resources; refusing anything else here means
    # a fractional GPU can never be rounded into an allow.
    if isinstance(value, bool):
        raise InvalidObject(path, f"{value!r} is not a whole number")
    if isinstance(value, int):
        if value < 0:
            raise InvalidObject(path, f"{value} is negative")
        return value
    if isinstance(value, str) and _WHOLE.fullmatch(value):
        return int(value)
    shown = f'"{value}"' if isinstance(value, str) else repr(value)
    raise InvalidObject(path, f"{shown} is not a whole number")


def _container_gpus(container: Any, path: str) -> dict[str, int]:
    container = as_mapping(container, path, required=True)
    resources = as_mapping(container.get("resources"), f"{path}.resources")
    counts: dict[str, int] = {}
    for section in ("requests", "limits"):
        amounts = as_mapping(resources.get(section), f"{path}.resources.{section}")
        for name, value in amounts.items():
            if isinstance(name, str) and is_gpu_resource(name):
                n = _quantity(value, f'{path}.resources.{section}["{name}"]')
                counts[name] = max(counts.get(name, 0), n)
    return counts


def gpu_requests(spec: Mapping[str, Any]) -> dict[str, int]:
    """The pod's effective request per GPU resource: max(sum over containers, max over init
    containers), each container counting max(limits, requests)."""
    spec = as_mapping(spec, "spec", required=True)
    total: dict[str, int] = {}
    for i, c in enumerate(as_list(spec.get("containers"), "spec.containers")):
        for name, n in _container_gpus(c, f"spec.containers[{i}]").items():
            total[name] = total.get(name, 0) + n
    for i, c in enumerate(as_list(spec.get("initContainers"), "spec.initContainers")):
        for name, n in _container_gpus(c, f"spec.initContainers[{i}]").items():
            total[name] = max(total.get(name, 0), n)
    return {name: n for name, n in sorted(total.items()) if n > 0}


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise InvalidObject(path, "must be a string")
    return value


def _node_selector(spec: Mapping[str, Any]) -> dict[str, str]:
    selector = as_mapping(spec.get("nodeSelector"), "spec.nodeSelector")
    return {
        _string(k, "spec.nodeSelector"): _string(v, f'spec.nodeSelector["{k}"]') for k, v in selector.items()
    }


def _requirement(req: Any, rpath: str) -> dict[str, Any]:
    req = as_mapping(req, rpath, required=True)
    operator = req.get("operator")
    if operator not in SELECTOR_OPERATORS:
        raise InvalidObject(f"{rpath}.operator", f"{operator!r} is not a node selector operator")
    values = [
        _string(v, f"{rpath}.values[{k}]")
        for k, v in enumerate(as_list(req.get("values"), f"{rpath}.values"))
    ]
    entry: dict[str, Any] = {"key": _string(req.get("key"), f"{rpath}.key"), "operator": operator}
    if values:
        entry["values"] = values
    return entry


def _node_affinity(spec: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
    affinity = as_mapping(spec.get("affinity"), "spec.affinity")
    node = as_mapping(affinity.get("nodeAffinity"), "spec.affinity.nodeAffinity")
    base = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    required = as_mapping(node.get("requiredDuringSchedulingIgnoredDuringExecution"), base)
    terms: list[list[dict[str, Any]]] = []
    for i, term in enumerate(as_list(required.get("nodeSelectorTerms"), f"{base}.nodeSelectorTerms")):
        tpath = f"{base}.nodeSelectorTerms[{i}]"
        term = as_mapping(term, tpath, required=True)
        # The term is kept even when empty, since an empty term lets the pod go anywhere.
        requirements = [
            _requirement(req, f"{tpath}.matchExpressions[{j}]")
            for j, req in enumerate(as_list(term.get("matchExpressions"), f"{tpath}.matchExpressions"))
        ]
        # matchFields name nodes (metadata.name): a DaemonSet pod's, or anyone's way to a node.
        for j, req in enumerate(as_list(term.get("matchFields"), f"{tpath}.matchFields")):
            entry = _requirement(req, f"{tpath}.matchFields[{j}]")
            if entry["key"] != NODE_NAME_FIELD:
                raise InvalidObject(
                    f"{tpath}.matchFields[{j}].key", f"{entry['key']!r} is not {NODE_NAME_FIELD}"
                )
            requirements.append(entry)
        terms.append(requirements)
    return terms


def _tolerations(spec: Mapping[str, Any]) -> list[dict[str, str]]:
    out = []
    for i, tol in enumerate(as_list(spec.get("tolerations"), "spec.tolerations")):
        path = f"spec.tolerations[{i}]"
        tol = as_mapping(tol, path, required=True)
        entry = {}
        for key in ("key", "operator", "value", "effect"):
            if tol.get(key) is not None:
                entry[key] = _string(tol[key], f"{path}.{key}")
        if "operator" in entry and entry["operator"] not in TOLERATION_OPERATORS:
            raise InvalidObject(f"{path}.operator", f"{entry['operator']!r} is not a toleration operator")
        out.append(entry)
    return out


def _resource_claims(spec: Mapping[str, Any]) -> list[str]:
    claims = []
    for i, claim in enumerate(as_list(spec.get("resourceClaims"), "spec.resourceClaims")):
        path = f"spec.resourceClaims[{i}]"
        claim = as_mapping(claim, path, required=True)
        name = _string(claim.get("name"), f"{path}.name")
        if not name:
            raise InvalidObject(f"{path}.name", "must not be empty")
        claims.append(name)
    return claims


def _name(obj: Mapping[str, Any]) -> str:
    metadata = as_mapping(obj.get("metadata"), "metadata")
    for key in ("name", "generateName"):
        value = metadata.get(key)
        if isinstance(value, str) and value:
            return value
    return "(unnamed)"


def workload_from_object(obj: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """The `admit_workload` payload for a workload object in `namespace`."""
    spec, replicas = pod_spec_of(obj)
    workload: dict[str, Any] = {"namespace": namespace, "name": _name(obj), "kind": obj["kind"]}
    per_pod = gpu_requests(spec)
    # Per-pod quantities that are zero stay zero; multiplying keeps the sum comparable to quotas.
    resources = {name: n * replicas for name, n in per_pod.items() if n * replicas > 0}
    fields: dict[str, Any] = {
        "resources": resources,
        "node_selector": _node_selector(spec),
        "node_affinity": _node_affinity(spec),
        "tolerations": _tolerations(spec),
        "resource_claims": _resource_claims(spec),
    }
    workload.update({k: v for k, v in fields.items() if v})
    priority = spec.get("priorityClassName")
    if priority is not None and _string(priority, "spec.priorityClassName"):
        workload["priority_class_name"] = priority
    node_name = spec.get("nodeName")
    if node_name is not None and _string(node_name, "spec.nodeName"):
        workload["node_name"] = node_name
    return workload


def asks_for_gpus(workload: Mapping[str, Any]) -> bool:
    """GPU extended resources, or device claims whose devices the object does not show."""
    if workload.get("resource_claims"):
        return True
    return any(is_gpu_resource(r) and n > 0 for r, n in workload.get("resources", {}).items())


def _policy_key(key: str) -> bool:
    return key.startswith(POLICY_KEY_PREFIXES)


def crosses_constraints(workload: Mapping[str, Any]) -> bool:
    """The workload touches a label, taint or priority class the platform's policies govern, or
    names its node (which may be a tenant's dedicated node, or outside a tenant's residency)."""
    if workload.get("node_name"):
        return True
    if any(_policy_key(k) for k in workload.get("node_selector", {})):
        return True
    if any(
        _policy_key(r["key"]) or r["key"] == NODE_NAME_FIELD
        for term in workload.get("node_affinity", [])
        for r in term
    ):
        return True
    for tol in workload.get("tolerations", []):
        key = tol.get("key", "")
        # A key-less Exists toleration tolerates every taint, dedicated pools' included.
        if key.startswith(POLICY_TOLERATION_PREFIX) or (not key and tol.get("operator") == "Exists"):
            return True
    return str(workload.get("priority_class_name", "")).startswith(POLICY_PRIORITY_PREFIX)


def named_nodes(workload: Mapping[str, Any]) -> list[str]:
    """The nodes the workload names, in order: spec.nodeName, a kubernetes.io/hostname selector,
    and the In values on the hostname or on metadata.name (matchFields) of its affinity terms."""
    names = [workload["node_name"]] if workload.get("node_name") else []
    selected = workload.get("node_selector", {}).get(HOSTNAME_LABEL)
    names += [selected] if selected else []
    for term in workload.get("node_affinity", []):
        for r in term:
            if r["key"] in (HOSTNAME_LABEL, NODE_NAME_FIELD) and r["operator"] == "In":
                names += r.get("values", [])
    return list(dict.fromkeys(names))


def needs_policy(workload: Mapping[str, Any]) -> bool:
    return asks_for_gpus(workload) or crosses_constraints(workload)

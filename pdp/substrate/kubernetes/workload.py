"""A deployment as a Kubernetes workload object, rendered from the PDP's placement decision (pure).

The lifecycle does not pick nodes: it writes the decision's constraints into an apps/v1
Deployment (required node affinity to the regions of the eligible clusters and the decision's own
requirements, the dedicated pool's toleration, the tier's priority class, the GPU request in the
class's extended resource) and leaves the choice inside them to the scheduler. The placement is
kept beside the object, so a later decision can be compared with it: an SLA or GPU-sharing change
re-applies only the workloads whose placement moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pdp.substrate.kubernetes import runtimes
from pdp.substrate.kubernetes.objects import Obj
from pdp.substrate.labels import LOCAL_QUEUE, POOL_LABEL, QUEUE_LABEL, REGION_LABEL, TENANT_LABEL

DEPLOYMENT_LABEL = "gpupaas.io/deployment"
SHARING_LABEL = "nvidia.com/gpu.sharing-strategy"
MIG_LABEL = "nvidia.com/mig.strategy"
CLUSTERS_ANNOTATION = "gpupaas.io/eligible-clusters"
CLUSTER_ANNOTATION = "gpupaas.io/cluster"
DECISION_ANNOTATION = "gpupaas.io/placement-decision"
REVISION_ANNOTATION = "gpupaas.io/placement-bundle-revision"
# GPU feature discovery appends this to the product label of nodes that time-slice or run MPS.
SHARED_SUFFIX = "-SHARED"


def placement(
    constraints: Mapping[str, Any], fleet: Mapping[str, Any], sharing: str, cluster: str = ""
) -> dict[str, Any]:
    """What of a placement decision the workload object carries, in a comparable form. `cluster`:
    the one eligible cluster it is applied to (a multi-cluster lifecycle), whose region it then
    requires; without it, the regions of every eligible cluster."""
    clusters = sorted(str(c) for c in constraints.get("eligible_clusters", []))
    known = fleet.get("clusters", {})
    isolation = constraints.get("isolation", {})
    mode = str(isolation.get("mode", ""))
    within = [cluster] if cluster else clusters
    chosen = {"cluster": cluster} if cluster else {}
    return {
        **chosen,
        "clusters": clusters,
        "regions": sorted({str(known[c]["region"]) for c in within if c in known}),
        "node_selector": dict(sorted(constraints.get("node_selector", {}).items())),
        "node_affinity": [dict(r) for r in constraints.get("node_affinity", [])],
        "tolerations": [dict(t) for t in constraints.get("tolerations", [])],
        "priority_class_name": str(constraints.get("priority_class_name", "")),
        "isolation": mode,
        "pools": sorted(isolation.get("dedicated_pools", [])) if mode == "dedicated" else [],
        "sharing": sharing,
    }


def requirements(place: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The required node affinity: one term, its requirements ANDed."""
    reqs = [dict(r) for r in place["node_affinity"]]
    # The decision constrains the region only for residency-restricted tenants; the eligible
    # clusters bound every tenant, so their regions are always required.
    if place["regions"] and not any(r["key"] == REGION_LABEL for r in reqs):
        reqs.append({"key": REGION_LABEL, "operator": "In", "values": list(place["regions"])})
    if place["pools"]:
        reqs.append({"key": POOL_LABEL, "operator": "In", "values": list(place["pools"])})
    if place["sharing"] in ("time-slicing", "mps"):
        reqs.append({"key": SHARING_LABEL, "operator": "In", "values": [place["sharing"]]})
    elif place["sharing"] == "mig":
        reqs.append({"key": MIG_LABEL, "operator": "In", "values": ["mixed", "single"]})
    return sorted(reqs, key=lambda r: (r["key"], r["operator"]))


def name_of(spec: Mapping[str, Any]) -> str:
    return str(spec["deployment"])


def render(
    tenant: str,
    namespace: str,
    spec: Mapping[str, Any],
    place: Mapping[str, Any],
    fleet: Mapping[str, Any],
    *,
    running: bool = True,
    decision_id: str = "",
    bundle_revision: str = "",
) -> Obj:
    """The Deployment of one deployment record. Not running (preempted, queued): 0 replicas, so
    the object and its placement stay and the workload can be resumed by scaling it back."""
    name = name_of(spec)
    gpu_class = fleet.get("gpu_classes", {}).get(str(spec["gpu_class"]), {})
    resource = str(gpu_class.get("resource", "nvidia.com/gpu"))
    selector = {str(k): str(v) for k, v in place["node_selector"].items()}
    label = gpu_class.get("node_label", {})
    if place["sharing"] in ("time-slicing", "mps") and label.get("key") in selector:
        selector[label["key"]] = f"{label['value']}{SHARED_SUFFIX}"
    labels = {TENANT_LABEL: tenant, DEPLOYMENT_LABEL: name}
    # The serving runtime's own container (pdp/substrate/kubernetes/runtimes.py): a batch size
    # change re-renders its flags, so the Deployment rolls its pods.
    vendor = str(gpu_class.get("vendor", "nvidia"))
    pod: dict[str, Any] = {
        "containers": [runtimes.container(spec, vendor, resource)],
        "volumes": runtimes.volumes(),
    }
    if place["priority_class_name"]:
        pod["priorityClassName"] = place["priority_class_name"]
    if selector:
        pod["nodeSelector"] = selector
    reqs = requirements(place)
    if reqs:
        pod["affinity"] = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": reqs}]
                }
            }
        }
    if place["tolerations"]:
        pod["tolerations"] = [dict(t) for t in place["tolerations"]]
    template_meta: dict[str, Any] = {"labels": labels}
    if extra := runtimes.template_annotations(spec):
        template_meta["annotations"] = extra
    annotations = {CLUSTERS_ANNOTATION: ",".join(place["clusters"])}
    if place.get("cluster"):
        annotations[CLUSTER_ANNOTATION] = str(place["cluster"])
    if decision_id:
        annotations[DECISION_ANNOTATION] = decision_id
    if bundle_revision:
        annotations[REVISION_ANNOTATION] = bundle_revision
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**labels, QUEUE_LABEL: LOCAL_QUEUE},
            "annotations": annotations,
        },
        "spec": {
            "replicas": int(spec["replicas"]) if running else 0,
            "selector": {"matchLabels": labels},
            "template": {"metadata": template_meta, "spec": pod},
        },
    }


def deploy_intent(
    tenant: str, spec: Mapping[str, Any], usage: Mapping[str, int], actor: str, sharing: str | None = None
) -> dict[str, Any]:
    """The deploy_model intent that places an existing deployment afresh. Its own GPUs are taken
    out of the usage: it is moved, not added."""
    payload = {
        k: spec[k]
        for k in (
            "deployment",
            "gpu_class",
            "gpus_per_replica",
            "replicas",
            "sharing",
            "cluster",
            "batch_size",
            "runtime",
            "model",
        )
        if spec.get(k) is not None
    }
    if sharing is not None:
        payload["sharing"] = sharing
    own = int(spec["gpus_per_replica"]) * int(spec["replicas"])
    cls = str(spec["gpu_class"])
    rest = {**usage, cls: max(0, int(usage.get(cls, 0)) - own)}
    return {"kind": "deploy_model", "tenant": tenant, "actor": actor, "usage": rest, "deploy_model": payload}

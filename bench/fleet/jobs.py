"""Spot tasks as Kueue-managed batch/v1 Jobs (pure): the Job a task becomes, the Job a pod
belongs to, and what a Kueue Workload says about its Job's place in the queue.

Which tasks: a spot tenant's tasks that hold whole GPUs (nvidia.com/gpu) or none. The tenants'
ClusterQueues, as the product renders them (pdp/substrate/kueue/objects.py), hold quota on each
GPU class's resource only; a task holding a share of a GPU (nvidia.com/gpu.shared, the
time-slicing replicas) names a resource no ClusterQueue covers, which Kueue would never admit, so
those stay pods submitted as the other tiers' are.

A Job runs its task once (completions 1, backoffLimit 0). A pod of it evicted from a failed node
or preempted is replaced by the job controller, not the replay: the pod failure policy ignores a
DisruptionTarget, as a batch job that survives node loss is written.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from bench.fleet.mapping import SHARED_GPU, TASK_LABEL, Arrival
from pdp.substrate.kueue.objects import PRIORITY_LABEL
from pdp.substrate.labels import LOCAL_QUEUE, QUEUE_LABEL, TIER_PRIORITY_CLASS

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def queued(arrival: Arrival) -> bool:
    """Whether the task goes through Kueue (the module's docstring says which)."""
    limits = arrival.pod["spec"]["containers"][0]["resources"]["limits"]
    return arrival.tenant.tier == "spot" and SHARED_GPU not in limits


def job_object(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The Job of a task's pod: same name, namespace and pod spec, in the tenant's LocalQueue
    with its tier's workload priority."""
    meta = pod["metadata"]
    template_spec = copy.deepcopy(pod["spec"])
    labels = {
        QUEUE_LABEL: LOCAL_QUEUE,
        PRIORITY_LABEL: TIER_PRIORITY_CLASS["spot"],
        TASK_LABEL: meta["labels"][TASK_LABEL],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": labels},
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 0,
            "podFailurePolicy": {
                "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
            },
            "template": {
                "metadata": {"labels": {TASK_LABEL: meta["labels"][TASK_LABEL]}},
                "spec": template_spec,
            },
        },
    }


def job_of_pod(obj: Mapping[str, Any]) -> str:
    """`namespace/job` of a Job's pod, else ""."""
    meta = obj.get("metadata") or {}
    job = (meta.get("labels") or {}).get(JOB_NAME_LABEL)
    return f"{meta.get('namespace', '')}/{job}" if job else ""


def workload_job(obj: Mapping[str, Any]) -> str:
    """`namespace/job` of the Job a Workload stands for, else ""."""
    meta = obj.get("metadata") or {}
    owner = next((o for o in meta.get("ownerReferences") or () if o.get("kind") == "Job"), None)
    return f"{meta.get('namespace', '')}/{owner['name']}" if owner else ""


def workload_waiting(obj: Mapping[str, Any]) -> str:
    """Why Kueue holds the Workload back: the message of its QuotaReserved False condition once
    Kueue has tried it (no flavor fits the quota), else "" (admitted, or not yet tried)."""
    conditions = (obj.get("status") or {}).get("conditions") or ()
    reserved = next((c for c in conditions if c.get("type") == "QuotaReserved"), None)
    if reserved is None or reserved.get("status") == "True":
        return ""
    message = str(reserved.get("message") or "")
    # "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in
    # flavor gpupaas-g2, 1 more needed": counted by cause, not by flavor.
    return "Kueue: no quota left" if "quota" in message else f"Kueue: {reserved.get('reason') or 'Pending'}"

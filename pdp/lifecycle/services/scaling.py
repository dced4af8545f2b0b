"""The payload of a `scale` intent for a deployment as the lifecycle stores it.

The product API's check, the console's preview and the workflow's decision all ask with this one
payload, so none counts a queued deployment's replicas as held (one did, and the API then
accepted a "scale-down" the workflow denied).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pdp.lifecycle.states import DeploymentState


def scale_payload(dep: Mapping[str, Any], target_replicas: Any) -> dict[str, Any]:
    """The replicas `dep` holds now (none while it is queued) and the target."""
    spec = dep["spec"]
    return {
        "deployment": dep["name"],
        "gpu_class": spec["gpu_class"],
        "gpus_per_replica": spec["gpus_per_replica"],
        "current_replicas": int(spec["replicas"]) if dep["state"] == DeploymentState.RUNNING else 0,
        "target_replicas": target_replicas,
    }

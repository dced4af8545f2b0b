"""The tenant's objects on every substrate the lifecycle realizes it on: Kubernetes always, plus
the substrates the worker was given (Slurm), merged by lifecycle group so each step applies,
compensates and deletes them together."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pdp.lifecycle.runtime import Runtime
from pdp.substrate import tenant_objects


def render_tenant(rt: Runtime, policy: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    fleet = rt.policy.fleet
    groups = tenant_objects.render(policy, fleet)
    for substrate in rt.substrates:
        for group, objs in substrate.render(policy, fleet).items():
            if group not in groups:
                raise ValueError(f"substrate object group {group!r} is not a lifecycle group")
            groups[group] = [*groups[group], *objs]
    return groups

"""The store's deployments as realizing them needs, and the links a record keeps of the decision
it was made for (realize/)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pdp.lifecycle.runtime import Runtime
from pdp.lifecycle.states import DeploymentState


def links(decision: Mapping[str, Any]) -> dict[str, str]:
    return {
        "decision_id": str(decision.get("decision_id", "")),
        "bundle_revision": str(decision.get("bundle_revision", "")),
    }


def namespace_of(rt: Runtime, tenant: str) -> str:
    return str(rt.store.tenant(tenant)["policy"]["namespaces"][0])


def deployment_of(rt: Runtime, tenant: str, name: str) -> dict[str, Any] | None:
    return next((d for d in rt.store.deployments(tenant) if d["name"] == name), None)


def running_deployment(rt: Runtime, tenant: str, name: str) -> dict[str, Any] | None:
    """The tenant's deployment of that name while it runs (None otherwise)."""
    dep = deployment_of(rt, tenant, name)
    return dep if dep is not None and dep["state"] == DeploymentState.RUNNING else None

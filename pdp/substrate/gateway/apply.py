"""The lifecycle's side of the inference gateway: a deployment's routing objects applied and
deleted through the Kubernetes adapter, only where the fleet names a gateway.

Before applying, an object of the same name that belongs to another tenant (a namespace shared by
mistake or by a crafted tenant document) stops the apply: server-side apply with force would
otherwise take the other tenant's route over."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pdp.substrate.gateway.routes import GatewayRef, RouteError, render
from pdp.substrate.labels import TENANT_LABEL


class Applier(Protocol):
    def apply(self, obj: Mapping[str, Any]) -> None: ...

    def delete(self, obj: Mapping[str, Any]) -> None: ...


def _check_owner(adapter: Applier, obj: Mapping[str, Any], tenant: str) -> None:
    get = getattr(adapter, "get", None)  # a dry-run adapter has no cluster to collide in
    if get is None:
        return
    found = get(obj)
    if found is None:
        return
    owner = (found.get("metadata", {}).get("labels") or {}).get(TENANT_LABEL)
    if owner != tenant:
        meta = obj["metadata"]
        raise RouteError(
            f"{obj['kind']} {meta['namespace']}/{meta['name']}: owned by tenant {owner!r}, "
            f"not {tenant!r}; refusing to take it over"
        )


def apply(
    adapter: Applier, fleet: Mapping[str, Any], tenant: str, namespace: str, deployment: str, tier: str
) -> list[dict[str, Any]]:
    """Apply the deployment's routing objects (none without a fleet gateway); returns them."""
    gateway = GatewayRef.from_fleet(fleet)
    if gateway is None:
        return []
    objs = render(tenant, namespace, deployment, tier, gateway)
    for obj in objs:
        _check_owner(adapter, obj, tenant)
    for obj in objs:
        adapter.apply(obj)
    return objs


def delete(adapter: Applier, fleet: Mapping[str, Any], tenant: str, namespace: str, deployment: str) -> None:
    """Delete the deployment's routing objects, the route first (nothing routes to a pool that
    is going away)."""
    gateway = GatewayRef.from_fleet(fleet)
    if gateway is None:
        return
    for obj in reversed(render(tenant, namespace, deployment, "standard", gateway)):
        _check_owner(adapter, obj, tenant)
        adapter.delete(obj)

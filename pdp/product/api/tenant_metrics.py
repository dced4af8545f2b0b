"""`GET /metrics/tenants`: the tenant-labelled gauges (pdp/metrics/tenants.py's TenantCollector)
in the Prometheus text format, to a metrics token or the admin's — per active tenant and GPU class,
the GPUs it is entitled to and its deployments waiting for capacity. The worker's `/metrics` stays
unauthenticated because no label there names a tenant; these name one, so Prometheus scrapes them
with a metrics token (its `authorization` setting; POST /v1/admin/metrics-tokens issues one), which
reads this and nothing else. The console's usage page charts them (docs/console.md)."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from pdp.lifecycle.runtime import current
from pdp.lifecycle.states import DeploymentState, TenantState
from pdp.metrics import tenant_registry
from pdp.product.auth import MetricsReader

router = APIRouter()


def figures() -> dict[tuple[str, str], tuple[int, int]]:
    """(tenant, GPU class) -> (GPUs entitled, deployments queued), of the active tenants: every
    class a tenant is entitled to (0 queued when none waits), and any class it has queued work of."""
    store = current().store
    entitled: dict[tuple[str, str], int] = {}
    queued: dict[tuple[str, str], int] = {}
    for record in store.tenants():
        if record["state"] != TenantState.ACTIVE:
            continue
        name = str(record["name"])
        for gpu_class, gpus in (record["policy"].get("entitlements") or {}).items():
            entitled[(name, str(gpu_class))] = int(gpus)
        for dep in store.deployments(name):
            if dep["state"] == DeploymentState.QUEUED:
                key = (name, str(dep["spec"].get("gpu_class", "")))
                queued[key] = queued.get(key, 0) + 1
    return {key: (entitled.get(key, 0), queued.get(key, 0)) for key in entitled.keys() | queued.keys()}


_registry = tenant_registry(figures)


@router.get("/metrics/tenants", include_in_schema=False)
def tenant_metrics(reader: MetricsReader) -> Response:  # 401 without a token, 403 with a tenant's
    return Response(generate_latest(_registry), media_type=CONTENT_TYPE_LATEST)

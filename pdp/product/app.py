"""The northbound product API (HTTP + JSON, OpenAPI at /openapi.json).

Every mutating call is checked by the PDP before anything starts: DENY answers 403 with the reason
codes and changes nothing. Otherwise it starts a durable workflow, which decides the change inside
the tenant's serialization against the usage of that moment and applies it there; the answer is
that decision (pdp/product/api/accepted.py), or 202 with the request's workflow id when it takes
longer. A tenant token sees and acts on its own tenant only; another tenant's resources are 404
(their existence is not disclosed), admin-only calls are 403. Each area's routes are in its own
module of this folder; this one assembles them.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from pdp.lifecycle.metrics import router as metrics_router
from pdp.product import console
from pdp.product.api import errors
from pdp.product.api.audit import router as audit_router
from pdp.product.api.capacity import router as capacity_router
from pdp.product.api.clusters import router as clusters_router
from pdp.product.api.decisions import router as decisions_router
from pdp.product.api.drift import router as drift_router
from pdp.product.api.incidents import router as incidents_router
from pdp.product.api.reclaim import router as reclaim_router
from pdp.product.api.rollouts import router as rollouts_router
from pdp.product.api.sla import router as sla_router
from pdp.product.api.tenant_metrics import router as tenant_metrics_router
from pdp.product.api.tenants import router as tenants_router
from pdp.product.api.tokens import router as tokens_router
from pdp.product.api.workflows import router as workflows_router


def create_app() -> FastAPI:
    app = FastAPI(title="gpupaas tenant lifecycle", version="1")
    app.add_exception_handler(RequestValidationError, errors.invalid_request)
    app.include_router(tokens_router)
    app.include_router(metrics_router)
    app.include_router(tenant_metrics_router)
    app.include_router(decisions_router)
    app.include_router(clusters_router)
    app.include_router(reclaim_router)
    app.include_router(sla_router)
    app.include_router(drift_router)
    app.include_router(incidents_router)
    app.include_router(rollouts_router)
    app.include_router(tenants_router)
    app.include_router(capacity_router)
    app.include_router(workflows_router)
    app.include_router(audit_router)
    app.mount(console.PREFIX, console.create(app))  # the web console (pdp/product/console/)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app

"""The console's pages, one module or folder each (a folder where a page has charts, a form or pure
logic, such as waste's reclaims and incidents' timelines, beside its routes); `routers` is every
page's routes, in the order the console mounts them."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from pdp.product.console.pages import (
    admin,
    decisions,
    drift,
    enforcement,
    incidents,
    intents,
    onboarding,
    rollouts,
    sla,
    tenant,
    usage,
    waste,
)


def routers(api: FastAPI) -> list[APIRouter]:
    """Every page's routes; `api` is the product API whose route functions they act through."""
    pages = (
        tenant,
        usage,
        intents,
        admin,
        onboarding,
        decisions,
        waste,
        enforcement,
        sla,
        incidents,
        drift,
        rollouts,
    )
    return [page.router(api) for page in pages]

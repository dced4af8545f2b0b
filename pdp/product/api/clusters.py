"""The clusters the worker realizes tenants in, and the workflows paused on an unreachable one.

Admin only: a pause names the tenant whose workflow waits.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from pdp.lifecycle.runtime import current
from pdp.product.auth import Caller, require_admin

router = APIRouter(tags=["clusters"])


@router.get("/v1/clusters")
def clusters(caller: Caller) -> dict[str, Any]:
    """`managed`: one adapter per cluster (--clusters); `clusters`: their names; `paused`: each
    workflow operation waiting for an unreachable cluster, with the error and since when."""
    require_admin(caller)
    found = current().clusters
    return {
        "managed": found.managed,
        "clusters": [c for c in found.names() if c],
        "paused": [asdict(p) for p in found.paused()],
    }

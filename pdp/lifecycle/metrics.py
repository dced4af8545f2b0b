"""The lifecycle worker's `/metrics`: its decisions (pdp/metrics/decision_point.py, entry point
"lifecycle"), and its workflows and approvals, read from DBOS and the store when Prometheus scrapes.

Unauthenticated like a probe: every label is a closed set (workflow name, DBOS status), so no
tenant's name or request reaches a scraper; the NetworkPolicy decides who may reach the port.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dbos import DBOS
from fastapi import APIRouter
from starlette.responses import Response

from pdp.lifecycle.runtime import current
from pdp.metrics import LifecycleCollector, register_lifecycle
from pdp.net.metrics_http import metrics_response

router = APIRouter()


def workflow_counts() -> dict[tuple[str, str], int]:
    """(workflow name, DBOS status) -> how many; names are the code's workflow functions."""
    counts: dict[tuple[str, str], int] = {}
    for w in DBOS.list_workflows(load_input=False, load_output=False):
        key = (str(w.name).rsplit(".", 1)[-1], str(w.status))
        counts[key] = counts.get(key, 0) + 1
    return counts


def pending_approval_ages() -> list[float]:
    """Seconds each approval waiting for an answer has waited."""
    now = datetime.now(UTC)
    return [
        max((now - datetime.fromisoformat(a["created_at"])).total_seconds(), 0.0)
        for a in current().store.approvals(open_only=True)
    ]


_collector = LifecycleCollector(workflow_counts, pending_approval_ages)


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    register_lifecycle(_collector)
    return metrics_response()

"""Enforcement: the requests the PDP refused, from its decision log (pdp/records/search.py) — how
many per reason code and per asker (a substrate's admission front, `substrate:NAME`, or the
lifecycle itself), and the denials per hour per reason as a chart. The admin sees every tenant's
(`/admin/enforcement`), a tenant its own (`/tenants/{tenant}/enforcement`, 404 for another's).
The admin's page also charts the PDP's denial rate per entry point and reason from Prometheus
(charts.py: its counter has no tenant label, so no tenant's page shows it)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from starlette.responses import Response

from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.services import queries
from pdp.product.console.charts import Chart, Line, Point, chart
from pdp.product.console.charts.source import window_of
from pdp.product.console.common import own_tenant, require_admin
from pdp.product.console.pages.enforcement.charts import denial_rate_chart
from pdp.product.console.render import page
from pdp.product.console.session import Viewer
from pdp.records.search import MAX_LIMIT, Search, search

WINDOW = timedelta(days=1)
BUCKET_S = 3600  # denials counted per hour


def asker(record: dict[str, Any]) -> str:
    """Who asked for the decision: `substrate:NAME`, `tenant:NAME`, admin, or the lifecycle."""
    return str(record.get("principal") or "lifecycle (in process)")


def codes(record: dict[str, Any]) -> list[str]:
    return [str(r.get("code")) for r in record.get("reasons") or []] or ["(no reason given)"]


def counts(denials: list[dict[str, Any]]) -> dict[str, list[tuple[str, int]]]:
    """Denials per reason code, per asker and per request kind, most first."""
    by_reason = Counter(c for d in denials for c in codes(d))
    by_asker = Counter(asker(d) for d in denials)
    by_kind = Counter(str(d.get("kind")) for d in denials)
    return {
        "reason": by_reason.most_common(),
        "asker": by_asker.most_common(),
        "kind": by_kind.most_common(),
    }


def per_hour(denials: list[dict[str, Any]], start: datetime, end: datetime) -> Chart:
    """Denials per hour per reason code from `start` to `end` (0 in an hour without any)."""
    first = int(start.timestamp()) // BUCKET_S * BUCKET_S
    hours = list(range(first, int(end.timestamp()) + 1, BUCKET_S))
    per: dict[str, Counter[int]] = {}
    for d in denials:
        at = int(datetime.fromisoformat(str(d["decided_at"]).replace("Z", "+00:00")).timestamp())
        for code in codes(d):
            per.setdefault(code, Counter())[at // BUCKET_S * BUCKET_S] += 1
    lines = [Line(code, tuple(Point(h, float(n[h])) for h in hours)) for code, n in per.items()]
    return chart("Denials per hour, per reason", "denials", lines)


def _enforcement(
    request: Request, who: Principal, tenant: str | None, window: float | None = None
) -> Response:
    log = queries.pdp().decision_log
    if log is None:
        raise HTTPException(404, "this worker keeps no decision records")
    end = datetime.now(UTC)
    start = end - WINDOW
    wanted = Search(tenant=tenant, outcome="DENY", since=start, limit=MAX_LIMIT)
    denials = [r.to_dict() for r in search(log, wanted)]
    return page(
        request, "enforcement.html", who, title="Enforcement" + (f" of {tenant}" if tenant else ""),
        tenant=tenant, denials=denials[:50], total=len(denials), counts=counts(denials),
        chart=per_hour(denials, start, end), limit=MAX_LIMIT,
        rates=None if tenant else denial_rate_chart(window_of(window)),
    )  # fmt: skip


def router(api: FastAPI) -> APIRouter:
    r = APIRouter()

    @r.get("/admin/enforcement")
    def all_enforcement(request: Request, who: Viewer, window: float | None = None) -> Response:
        require_admin(who)
        return _enforcement(request, who, None, window)

    @r.get("/tenants/{tenant}/enforcement")
    def tenant_enforcement(request: Request, tenant: str, who: Viewer) -> Response:
        own_tenant(api, who, tenant)  # 404 for another tenant's
        return _enforcement(request, who, tenant)

    return r

"""The SLA page's charts, from the recording rules Prometheus evaluates (pdp/telemetry/sla_rules.py):
the failed-request ratio per deployment, and the burn rate per deployment and objective over each
alert's long window against that alert's threshold. The PromQL builders are pure and check every
name they put in a query (tenant, objective, window), so nothing else reaches Prometheus."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

from pdp.product.console.charts.source import PROMQL_DURATION, NoChart, legend_by, range_chart
from pdp.product.console.charts.svg import Chart
from pdp.schemas.names import is_dns_label
from pdp.telemetry.sla import Windows
from pdp.telemetry.sla_rules import RECORDS, number, objective_budgets


def failed_ratio_promql(tenant: str | None) -> str:
    """The 5-minute failed-request ratio per deployment (of `tenant`'s when given)."""
    if tenant is not None and not is_dns_label(tenant):
        raise HTTPException(404, f"no tenant {tenant!r}")
    selector = f'{{tenant="{tenant}"}}' if tenant else ""
    return RECORDS["availability"].format(window="5m") + selector


def burn_rate_promql(budgets: Mapping[str, Mapping[str, float]], window: str) -> str:
    """The burn rate (the bad fraction the rules record over `window`, over its budget) per
    tenant, deployment and objective, of the tenants of `budgets` (tenant -> objective -> budget,
    as objective_budgets gives them); "" when none of them has an objective.

    Each tenant's ratios are divided by its own budget, as the rules' alerts divide them; the
    objective becomes a label because, divided, the latency and availability ratios of one
    deployment would otherwise be two series of the same labels (which `or` would drop)."""
    if not PROMQL_DURATION.fullmatch(window):
        raise ValueError(f"window {window!r}: expected a PromQL duration")
    parts = []
    for tenant, objectives in sorted(budgets.items()):
        if not is_dns_label(tenant):
            raise HTTPException(404, f"no tenant {tenant!r}")
        for kind, budget in sorted(objectives.items()):
            if kind not in RECORDS or not 0 <= budget <= 1:
                raise ValueError(f"tenant {tenant}: objective {kind!r} with budget {budget!r}")
            ratio = f'{RECORDS[kind].format(window=window)}{{tenant="{tenant}"}}'
            parts.append(f'label_replace({ratio} / {number(budget)}, "objective", "{kind}", "", "")')
    return "\nor\n".join(parts)


def budgets_of(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """tenant -> objective -> budget of the active tenants among `records` (GET /v1/tenants's)."""
    budgets: dict[str, dict[str, float]] = {}
    for record in records:
        if record.get("state") != "active":
            continue
        name = str(record["name"])
        try:
            budgets[name] = objective_budgets(name, record.get("policy") or {})
        except ValueError:
            # A policy the rule file cannot be written from has no rules either: nothing to chart.
            continue
    return budgets


@dataclass(frozen=True)
class BurnChart:
    id: str  # the figure's id on the page
    chart: Chart | NoChart
    rule: str  # when the alert fires, in words, beside the chart


def burn_charts(
    budgets: Mapping[str, Mapping[str, float]], windows: Windows, window: float
) -> list[BurnChart]:
    """One chart per alert (fast, slow): the burn rates over its long window, its threshold a flat
    line. The short window is stated rather than drawn: it only confirms the long one is current."""
    found = []
    for severity, long, short, threshold in windows.alerts():
        title = f"Burn rate per deployment over {long} (the {severity} alert's long window)"
        promql = burn_rate_promql(budgets, long)
        drawn: Chart | NoChart
        if not promql:
            drawn = NoChart(title, "No chart: no tenant here has an SLA objective.")
        else:
            legend = legend_by("tenant", "deployment", "objective")
            constants = {f"{severity} alert threshold": threshold} if math.isfinite(threshold) else {}
            drawn = range_chart(title, "times the budget", promql, legend, window=window, constants=constants)
        rule = (
            f"The {severity} alert fires while the burn rates over {long} and over {short} are both "
            f"above {number(threshold)} times the budget."
        )
        found.append(BurnChart(f"burn-{severity}", drawn, rule))
    return found

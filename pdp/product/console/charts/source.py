"""The console's charts read from the worker's Prometheus (`/api/v1/query_range`): a chart, or
why there is none (no Prometheus configured, unreachable, a PromQL error) as words for the page.
Never raises for Prometheus's sake: a page with a chart still renders without one."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pdp.lifecycle.services import queries
from pdp.product.console.charts.svg import Chart, Line, Point, chart
from pdp.telemetry.prometheus import PrometheusClient, PrometheusError, Series

WINDOW_S = 3600.0  # the last hour, unless a page asks for another window
WINDOWS_S = (60.0, 7 * 86400.0)  # the shortest and longest window a page may ask for
POINTS = 60  # about one point a minute over the window
TIMEOUT_S = 5.0
PROMQL_DURATION = re.compile(r"^([0-9]+(ms|[smhdwy]))+$")  # 5m, 1h30m: what a chart's query may name


@dataclass(frozen=True)
class NoChart:
    """A chart that could not be drawn, and why (shown on the page where the chart would be)."""

    title: str
    problem: str


def window_of(seconds: float | None) -> float:
    """A page's `window` parameter, kept within WINDOWS_S (the last hour when not given)."""
    if seconds is None:
        return WINDOW_S
    return min(max(float(seconds), WINDOWS_S[0]), WINDOWS_S[1])


def legend_by(*keys: str) -> Callable[[dict[str, str]], str]:
    """A series' legend: the values of `keys` in its labels, joined by "/"."""
    return lambda labels: "/".join(labels.get(k, "?") for k in keys) or "value"


def range_chart(
    title: str,
    unit: str,
    promql: str,
    legend: Callable[[dict[str, str]], str],
    *,
    url: str | None = None,
    end: float | None = None,
    window: float = WINDOW_S,
    constants: Mapping[str, float] | None = None,
) -> Chart | NoChart:
    """`promql` over the last `window` seconds up to `end` (now), each series a line; and each of
    `constants` (label -> value, e.g. an alert's threshold) a flat line beside them, so that the
    series are seen against it and the table states it."""
    url = queries.prometheus_url() if url is None else url
    if not url:
        return NoChart(title, "No chart: the worker reads no Prometheus (start it with --prometheus URL).")
    step = max(1.0, float(round(window / POINTS)))
    # The end on a whole step: the table's times are then whole seconds, and the same query
    # asked again within the step answers the same numbers.
    end = (time.time() if end is None else end) // step * step
    try:
        with PrometheusClient(url, timeout=TIMEOUT_S) as prometheus:
            found = prometheus.query_range(promql, start=end - window, end=end, step=step)
    except PrometheusError as exc:
        return NoChart(title, f"No chart: Prometheus did not answer ({exc}).")
    drawn = lines(found, legend)
    # No flat line without a series: "no data over this window" stays true of the chart.
    return chart(title, unit, drawn + constant_lines(drawn, constants or {}) if drawn else [])


def lines(found: list[Series], legend: Callable[[dict[str, str]], str]) -> list[Line]:
    return [Line(legend(s.labels), tuple(Point(at, value) for at, value in s.values)) for s in found]


def constant_lines(drawn: list[Line], constants: Mapping[str, float]) -> list[Line]:
    """A flat line per constant, with a point wherever one of `drawn` has one."""
    times = sorted({p.at for line in drawn for p in line.points})
    return [Line(label, tuple(Point(at, value) for at in times)) for label, value in constants.items()]

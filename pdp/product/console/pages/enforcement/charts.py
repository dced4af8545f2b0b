"""The enforcement page's Prometheus chart: denials per minute over time, by reason code and by
entry point, from the PDP's own counter `gpupaas_pdp_decision_reasons_total` (pdp/metrics/decision_point.py,
docs/metrics.md) in the worker's Prometheus, which must scrape the PDP processes for it.

Admins only: the counter's labels are closed sets (entry point, outcome, reason code) and carry
no tenant, by design (a tenant label is how Kyverno and Gatekeeper users got 10^5 series), so it
cannot be narrowed to one tenant; a tenant's enforcement page counts its denials from the decision
log instead. The entry point stands for the substrate: `webhook` (Kubernetes admission),
`extender` (kube-scheduler), `lifecycle` (the worker's own requests), `grpc`/`http` (a
substrate's adapter asking the API); which substrate behind grpc/http is in the decision log only."""

from __future__ import annotations

from pdp.metrics import PREFIX
from pdp.product.console.charts.source import PROMQL_DURATION, NoChart, legend_by, range_chart
from pdp.product.console.charts.svg import Chart

# pdp/metrics/decision_point.py's DECISION_REASONS, as Prometheus stores it
COUNTER = PREFIX + "decision_reasons_total"
RATE_WINDOW = "5m"


def denial_rate_promql(rate_window: str = RATE_WINDOW) -> str:
    """Denials per minute (the rate over `rate_window`), per entry point and reason code. A denial
    with several reasons counts once under each: the counter counts reasons given."""
    if not PROMQL_DURATION.fullmatch(rate_window):
        raise ValueError(f"rate window {rate_window!r}: expected a PromQL duration")
    return f'60 * sum by (entry_point, reason) (rate({COUNTER}{{outcome="DENY"}}[{rate_window}]))'


def denial_rate_chart(window: float) -> Chart | NoChart:
    title = f"Denials per minute by entry point and reason ({RATE_WINDOW} rate, all tenants)"
    legend = legend_by("entry_point", "reason")
    return range_chart(title, "denials per minute", denial_rate_promql(), legend, window=window)

"""The enforcement page's PromQL on its own: the denial rate is asked of the counter
pdp/metrics/decision_point.py defines, by labels it has, and the window cannot carry anything else
into the query. (Against a real Prometheus scraping a worker: tests/product/console/test_charts.py.)"""

from __future__ import annotations

import pytest

from pdp.metrics import DECISION_REASONS
from pdp.product.console.pages.enforcement.charts import COUNTER, denial_rate_promql


def test_the_denial_rate_per_entry_point_and_reason() -> None:
    assert denial_rate_promql() == (
        '60 * sum by (entry_point, reason) (rate(gpupaas_pdp_decision_reasons_total{outcome="DENY"}[5m]))'
    )
    assert denial_rate_promql("1h30m").endswith("[1h30m]))")


def test_the_counter_and_its_labels_are_the_pdps() -> None:
    # prometheus_client keeps a counter's name without `_total`; Prometheus stores it with.
    assert DECISION_REASONS._name + "_total" == COUNTER
    assert set(DECISION_REASONS._labelnames) == {"entry_point", "outcome", "reason"}  # no tenant


@pytest.mark.parametrize("window", ["5m]) or up[5m", "5 m", "", "m"])
def test_a_window_that_is_no_duration_is_refused(window: str) -> None:
    with pytest.raises(ValueError, match="PromQL duration"):
        denial_rate_promql(window)

"""The SLA page's PromQL builders on their own: the burn rate divides each tenant's recorded ratios
by its own budgets, under the recorded series' real names, and refuses any name that is not one
(tenant, objective, window) rather than put it in a query. (Against a real Prometheus:
tests/product/console/test_charts.py.)"""

from __future__ import annotations

import pytest
from fastapi import HTTPException

from pdp.product.console.charts import Line, Point
from pdp.product.console.charts.source import constant_lines
from pdp.product.console.pages.sla.charts import budgets_of, burn_rate_promql, failed_ratio_promql
from pdp.telemetry.sla_rules import RECORDS


def test_the_burn_rate_divides_each_tenants_ratio_by_its_own_budget() -> None:
    got = burn_rate_promql(
        {"globex": {"availability": 0.005}, "acme": {"latency": 0.01, "availability": 0.0005}}, "1h"
    )
    assert got.split("\nor\n") == [
        'label_replace(namespace_deployment:vllm_requests_failed:ratio_rate1h{tenant="acme"} / 0.0005, '
        '"objective", "availability", "", "")',
        'label_replace(namespace_deployment:vllm_requests_slower_than_sla:ratio_rate1h{tenant="acme"} '
        '/ 0.01, "objective", "latency", "", "")',
        'label_replace(namespace_deployment:vllm_requests_failed:ratio_rate1h{tenant="globex"} / 0.005, '
        '"objective", "availability", "", "")',
    ]
    # The names are the recording rules' own.
    assert (
        RECORDS["availability"].format(window="1h") in got and RECORDS["latency"].format(window="1h") in got
    )


def test_no_objective_no_query() -> None:
    assert burn_rate_promql({}, "1h") == "" and burn_rate_promql({"acme": {}}, "6h") == ""


@pytest.mark.parametrize("tenant", ['acme"} or up{x="', "Acme", "a" * 64, "-acme", ""])
def test_a_tenant_that_is_no_name_is_refused(tenant: str) -> None:
    with pytest.raises(HTTPException) as refused:
        burn_rate_promql({tenant: {"availability": 0.001}}, "1h")
    assert refused.value.status_code == 404
    if tenant:
        with pytest.raises(HTTPException):
            failed_ratio_promql(tenant)


@pytest.mark.parametrize("window", ["1h] or up[1h", "1 h", "", "h", "5"])
def test_a_window_that_is_no_duration_is_refused(window: str) -> None:
    with pytest.raises(ValueError, match="PromQL duration"):
        burn_rate_promql({"acme": {"availability": 0.001}}, window)


@pytest.mark.parametrize(
    ("kind", "budget"), [("throughput", 0.1), ("latency", -0.1), ("latency", float("nan"))]
)
def test_an_objective_or_budget_the_rules_never_write_is_refused(kind: str, budget: float) -> None:
    with pytest.raises(ValueError, match="objective"):
        burn_rate_promql({"acme": {kind: budget}}, "1h")


def test_failed_ratio_of_a_tenant_and_of_all() -> None:
    assert (
        failed_ratio_promql("acme") == 'namespace_deployment:vllm_requests_failed:ratio_rate5m{tenant="acme"}'
    )
    assert failed_ratio_promql(None) == "namespace_deployment:vllm_requests_failed:ratio_rate5m"


def test_budgets_of_the_active_tenants_as_the_rules_have_them() -> None:
    records = [
        {
            "name": "acme",
            "state": "active",
            "policy": {"sla": {"latency_p99_ms": 250, "availability": 99.95}},
        },
        {"name": "spot", "state": "active", "policy": {"sla": {"class": "best-effort"}}},
        {"name": "gone", "state": "offboarded", "policy": {"sla": {"availability": 99.5}}},
        {"name": "odd", "state": "active", "policy": {"sla": {"availability": "high"}}},
    ]
    got = budgets_of(records)
    assert got.keys() == {"acme", "spot"} and got["spot"] == {}
    assert got["acme"]["latency"] == 0.01 and got["acme"]["availability"] == pytest.approx(0.0005)


def test_a_threshold_is_a_flat_line_at_every_time_a_series_has() -> None:
    drawn = [Line("a", (Point(10, 1), Point(20, 2))), Line("b", (Point(30, 5),))]
    (flat,) = constant_lines(drawn, {"fast alert threshold": 14.4})
    assert flat == Line("fast alert threshold", (Point(10, 14.4), Point(20, 14.4), Point(30, 14.4)))
    assert constant_lines([], {"x": 1.0}) == [Line("x", ())]

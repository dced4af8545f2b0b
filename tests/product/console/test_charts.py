"""The console's charts against a real Prometheus scraping the telemetry simulator (and evaluating
the SLA rule file `pdp sla rules` writes for the tenants): the waste page's and the SLA page's
tables hold what `/api/v1/query_range` answers for the same query, a tenant's chart shows its own
namespaces only, and a Prometheus that does not answer is said on the page."""

from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from pdp.product.console.charts.source import NoChart, range_chart
from pdp.product.console.pages.enforcement.charts import denial_rate_promql
from pdp.product.console.pages.sla.charts import burn_rate_promql, failed_ratio_promql
from pdp.product.console.pages.waste.views import idle_promql
from pdp.telemetry.sla import fleet_windows
from pdp.telemetry.sla_rules import render
from tests.artifacts import cached_artifact
from tests.lifecycle.harness import EXAMPLES, Worker, h100_deployment, onboard, tenant_doc
from tests.ports import free_port
from tests.product.console.browser import Walk, needs_browser
from tests.product.console.chart_tables import chart_table
from tests.product.console.web import Session
from tests.telemetry.conftest import Telemetry, running_telemetry, wait_for

# acme-ui's p99 objective 500 ms (acme-eu's is 250): the simulator's 100 ms answers fall in vLLM's
# first latency bucket, up to 300 ms, and the rules interpolate inside it (a 250 ms objective would
# count a sixth of them slower, 16.7 times the budget, and the worker's check would escalate).
SLA = {"class": "latency-critical", "latency_p99_ms": 500, "availability": 99.95, "max_batch_size": 32}
TENANTS = {
    "acme-ui": tenant_doc("acme-eu", "acme-ui", ["acme-ui-prod"], isolation="shared", sla=SLA),
    "globex-ui": tenant_doc("globex", "globex-ui", ["globex-ui-ml"]),
}
# The alerts' windows of the fleet the worker reads (the rule file is written from the same).
WINDOWS = fleet_windows(yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"])
# The tenants' error budgets, from their SLAs: acme-ui's p99 (1% may be slower) and availability
# 99.95%, globex's availability 99.5%.
BUDGETS = {"acme-ui": {"latency": 0.01, "availability": 0.0005}, "globex-ui": {"availability": 0.005}}
# 4x acme-ui's budget: below both alerts' thresholds, so no escalation starts; an error a second
# (500 requests a second), so the ratio is steady within seconds of the first.
CHAT_ERRORS = 0.002
# GPUs the simulator's first scenario (examples/telemetry/waste.yaml, scraped before this one is
# played) did not hold: a GPU that changed pods within the waste report's hour would be counted
# once, for either. Two model servers, one per tenant, for the SLA rules.
SCENARIO = {
    "scenario": {
        "name": "console-waste",
        "nodes": [
            {"name": "us-spot-1", "model": "NVIDIA A100-SXM4-40GB", "gpus": 8, "memory_mib": 40960,
             "allocations": [
                {"gpus": [4, 5, 6], "namespace": "acme-ui-prod", "pod": "eval-5f6d7c8b9-qw8rt",
                 "container": "trainer", "utilization": 0, "memory_used_mib": 0},
                {"gpus": [7], "namespace": "acme-ui-prod", "pod": "chat-7d9c8b6f5-x2k4q",
                 "container": "vllm", "utilization": 90, "memory_used_mib": 30000,
                 "serving": {"model_name": "llama", "requests_per_second": 500, "latency_seconds": 0.1,
                             "error_ratio": CHAT_ERRORS}},
            ]},
            {"name": "eu-shared-1", "model": "NVIDIA H100 80GB HBM3", "gpus": 8, "allocations": [
                {"gpus": [3, 4], "namespace": "globex-ui-ml", "pod": "notebook-0",
                 "container": "jupyter", "utilization": 1, "memory_used_mib": 100},
                {"gpus": [5], "namespace": "globex-ui-ml", "pod": "embed-6f7d8c9b5-t2v4w",
                 "container": "vllm", "utilization": 80, "memory_used_mib": 30000,
                 "serving": {"model_name": "e5", "requests_per_second": 20, "latency_seconds": 0.1}},
            ]},
        ],
    }
}  # fmt: skip


class Setup:
    def __init__(self, telemetry: Telemetry, worker: Worker, tokens: dict[str, str]) -> None:
        self.telemetry, self.worker, self.tokens = telemetry, worker, tokens


@pytest.fixture(scope="module")
def prometheus_binary() -> Path:
    return cached_artifact("build-prometheus")  # the real Prometheus, as tests/telemetry uses it


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, prometheus_binary: Path) -> Iterator[Setup]:
    rules = tmp_path_factory.mktemp("rules") / "sla.rules.yml"
    rules.write_text(render({name: doc["tenant"] for name, doc in TENANTS.items()}, WINDOWS))
    # The worker's port is chosen now: Prometheus scrapes its /metrics (its decisions) from the start.
    worker = Worker(tmp_path_factory.mktemp("console"))
    targets = [f"127.0.0.1:{worker.port}"]
    with running_telemetry(
        tmp_path_factory.mktemp("telemetry"), prometheus_binary, [rules], targets
    ) as telemetry:

        def scraped_and_recorded() -> bool:
            idle = telemetry.client.query(idle_promql(None))
            burning = telemetry.client.query(burn_rate_promql(BUDGETS, WINDOWS.slow_long))
            recorded = {s.labels.get("tenant") for s in burning if math.isfinite(s.value)}
            # chat's errors counted (the errors' series appear with the first of them).
            failing = any(s.labels.get("deployment") == "chat" and s.value > 0 for s in burning)
            both = {s.labels.get("namespace") for s in idle} >= {"acme-ui-prod", "globex-ui-ml"}
            return both and recorded >= set(TENANTS) and failing

        telemetry.play(
            SCENARIO, "both tenants' idle GPUs scraped, their burn rates recorded", scraped_and_recorded
        )
        worker.opts["prometheus"] = telemetry.prometheus_url
        worker.start(timeout=180)
        try:
            tokens = {name: onboard(worker, doc) for name, doc in TENANTS.items()}
            yield Setup(telemetry, worker, tokens)
        finally:
            worker.stop()


def _login(setup: Setup, account: str) -> Session:
    s = Session(setup.worker)
    token = setup.worker.admin_token if account == "admin" else setup.tokens[account]
    assert s.login(account, token).status_code == 303
    return s


def test_the_waste_chart_holds_what_prometheus_answers(setup: Setup) -> None:
    s = _login(setup, "admin")
    page = s.get("/console/admin/waste?window=120").text
    s.close()
    assert "<svg" in page and 'class="series"' in page, page
    labels, rows = chart_table(page, "idle-gpus")
    assert set(labels) >= {"acme-ui-prod", "globex-ui-ml"} and rows
    start, end, step = rows[0][0], rows[-1][0], 2.0  # a 120 s window: one point each 2 s
    found = setup.telemetry.client.query_range(idle_promql(None), start=start, end=end, step=step)
    expected = {s.labels["namespace"]: dict(s.values) for s in found}
    assert sorted(expected) == sorted(labels)
    for at, values in rows:
        for label, value in zip(labels, values, strict=True):
            assert value == expected[label].get(at), (label, at, value)
    # The scenario: three idle GPUs of acme-ui's (the fourth serves), two of globex-ui's.
    assert rows[-1][1][labels.index("acme-ui-prod")] == 3 and rows[-1][1][labels.index("globex-ui-ml")] == 2
    # The waste report beside it (GPU-hours per tenant, pool and deployment): idle now per tenant.
    # (with the first scenario's tenants, still within the report's hour)
    per_tenant = _idle_now(page, "waste-tenants")
    assert per_tenant["acme-ui"] == 3 and per_tenant["globex-ui"] == 2, per_tenant
    assert sum(_idle_now(page, "waste-pools").values()) == sum(per_tenant.values())


def _idle_now(page: str, table: str) -> dict[str, int]:
    """The first column and the last ("Idle now") of the rows of the table `table`."""
    part = page.split(f'id="{table}"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<th scope="row">([^<]*)</th>.*?<td class="num">([0-9]+)</td></tr>', part)
    return {html.unescape(name): int(n) for name, n in rows}


def test_a_tenant_sees_its_own_namespaces_only(setup: Setup) -> None:
    s = _login(setup, "acme-ui")
    page = s.get("/console/tenants/acme-ui/waste?window=120").text
    labels, rows = chart_table(page, "idle-gpus")
    assert labels == ["acme-ui-prod"] and rows and "globex" not in page
    assert _idle_now(page, "waste-tenants") == {"acme-ui": 3}
    assert s.get("/console/tenants/globex-ui/waste").status_code in (403, 404)
    assert s.get("/console/admin/waste").status_code == 403
    s.close()


def test_an_unreachable_prometheus_is_said_not_raised() -> None:
    got = range_chart("Idle", "GPUs", "up", lambda labels: "x", url=f"http://127.0.0.1:{free_port()}")
    assert isinstance(got, NoChart) and "did not answer" in got.problem and "unreachable" in got.problem


def _shown(value: float | None) -> float | None:
    """`value` as the table shows it (4 significant digits), read back."""
    return None if value is None else float(f"{value:.4g}")


def _same(got: float | None, want: float | None) -> bool:
    if got is None or want is None:
        return got is want
    return (math.isnan(got) and math.isnan(want)) or got == want


def _holds_what_prometheus_answers(
    setup: Setup, page: str, figure: str, promql: str, keys: tuple[str, ...], flat: dict[str, float]
) -> tuple[list[str], list[tuple[float, list[float | None]]]]:
    """The table of `figure`: its series are those Prometheus answers for `promql` over the same
    times (legend: `keys` of the labels), each of `flat` a column of its constant value."""
    labels, rows = chart_table(page, figure)
    assert rows, figure
    start, end, step = rows[0][0], rows[-1][0], 2.0  # a 120 s window: one point each 2 s
    found = setup.telemetry.client.query_range(promql, start=start, end=end, step=step)
    expected = {"/".join(s.labels[k] for k in keys): dict(s.values) for s in found}
    assert sorted([*expected, *flat]) == sorted(labels), figure
    for at, values in rows:
        for label, value in zip(labels, values, strict=True):
            want = flat[label] if label in flat else _shown(expected[label].get(at))
            assert _same(value, want), (figure, label, at, value, want)
    return labels, rows


def test_the_burn_rate_charts_hold_what_prometheus_answers(setup: Setup) -> None:
    s = _login(setup, "admin")
    page = s.get("/console/admin/sla?window=120").text
    s.close()
    for severity, long, short, threshold in WINDOWS.alerts():
        flat = f"{severity} alert threshold"
        promql = burn_rate_promql(BUDGETS, long)
        keys = ("tenant", "deployment", "objective")
        labels, rows = _holds_what_prometheus_answers(
            setup, page, f"burn-{severity}", promql, keys, {flat: threshold}
        )
        # Every objective of every serving deployment, each tenant's own budgets.
        assert set(labels) == {
            "acme-ui/chat/availability",
            "acme-ui/chat/latency",
            "globex-ui/embed/availability",
            flat,
        }
        last = dict(zip(labels, rows[-1][1], strict=True))
        # chat fails 0.2% of its requests against 0.05% allowed: a burn rate of about 4 (the
        # simulator counts whole requests); its 100 ms answers are all within 500 ms, and embed's
        # never fail: 0.
        assert last["acme-ui/chat/availability"] == pytest.approx(CHAT_ERRORS / 0.0005, rel=0.25), last
        assert last["acme-ui/chat/latency"] == 0 and last["globex-ui/embed/availability"] == 0, last
        rule = f"The {severity} alert fires while the burn rates over {long} and over {short} are both above"
        assert rule in html.unescape(page)


def test_the_sla_page_reads_the_same_prometheus(setup: Setup) -> None:
    s = _login(setup, "acme-ui")
    page = s.get("/console/tenants/acme-ui/sla?window=120").text
    s.close()
    assert "No SLA measurement" not in page and "No chart" not in page, page
    # A tenant's charts hold its own deployments only, at its own budgets.
    labels, _ = _holds_what_prometheus_answers(
        setup, page, "failed-ratio", failed_ratio_promql("acme-ui"), ("tenant", "deployment"), {}
    )
    assert labels == ["acme-ui/chat"]
    for severity, long, _short, threshold in WINDOWS.alerts():
        flat = {f"{severity} alert threshold": threshold}
        promql = burn_rate_promql({"acme-ui": BUDGETS["acme-ui"]}, long)
        keys = ("tenant", "deployment", "objective")
        labels, _ = _holds_what_prometheus_answers(setup, page, f"burn-{severity}", promql, keys, flat)
        assert {label for label in labels if label not in flat} == {
            "acme-ui/chat/availability",
            "acme-ui/chat/latency",
        }
    assert "globex" not in page
    # Its deployment as GET /v1/sla measures it: 0.2% of chat's requests fail, an availability
    # (already a percentage) of about 99.8%.
    measured = re.search(r"acme-ui/chat <small>.*?<dt>Availability</dt><dd>([0-9.,e+]+) %</dd>", page, re.S)
    assert measured is not None and 99.5 < float(measured[1].replace(",", "")) < 100, measured


REFUSED = ("lifecycle", "GPU_CLASS_NOT_ENTITLED")  # (entry point, reason) of _refuse's denial


def _refuse(setup: Setup) -> None:
    """A deployment on a GPU class acme-ui has no entitlement to: the worker's PDP refuses it."""
    wanted = {**h100_deployment("a100", 1), "gpu_class": "A100-40GB"}
    with setup.worker.client(setup.tokens["acme-ui"]) as c:
        refused = c.post("/v1/tenants/acme-ui/deployments", json=wanted)
    assert refused.status_code == 403 and refused.json()["detail"]["outcome"] == "DENY", refused.text
    assert refused.json()["detail"]["reason_codes"] == [REFUSED[1]]


def _denial_rate(setup: Setup, at: float | None = None) -> float | None:
    found = setup.telemetry.client.query(denial_rate_promql(), at=at)
    key = dict(zip(("entry_point", "reason"), REFUSED, strict=True))
    return next((s.value for s in found if s.labels == key), None)


def test_the_denial_rate_chart_holds_what_prometheus_answers(setup: Setup) -> None:
    # The counter's series appears with its first denial, which rate() therefore cannot see: a
    # second one, once the first is scraped, is what the chart shows.
    _refuse(setup)
    wait_for("the first denial scraped", lambda: _denial_rate(setup) is not None)
    _refuse(setup)
    # Seen 2 s ago already: the page's chart ends on a whole 2 s step, at most 2 s before it is asked.
    wait_for("the second denial scraped", lambda: (_denial_rate(setup, time.time() - 2) or 0) > 0)
    s = _login(setup, "admin")
    page = s.get("/console/admin/enforcement?window=120").text
    s.close()
    labels, rows = _holds_what_prometheus_answers(
        setup, page, "denial-rates", denial_rate_promql(), ("entry_point", "reason"), {}
    )
    refused = labels.index("/".join(REFUSED))
    assert rows[-1][1][refused] > 0, rows[-1]
    # The counter has no tenant label: a tenant's page does not show it.
    s = _login(setup, "acme-ui")
    own = s.get("/console/tenants/acme-ui/enforcement?window=120").text
    s.close()
    assert 'id="denials-per-hour"' in own and 'id="denial-rates"' not in own


@needs_browser
def test_the_charts_draw_real_series_in_a_browser(setup: Setup, browser: WebDriver) -> None:
    """The pages with charts in Chromium, after the tests above put series behind each (idle GPUs,
    failed ratios and burn rates, denials): every chart drawn with a line per series and no
    Prometheus problem, every page axe-clean; with PDP_CONSOLE_SCREENSHOTS, these are the
    screenshots in docs/console/ (the walk of test_browser.py reads no Prometheus)."""
    walk = Walk(browser, setup.worker.url)
    # The windows the tests above read (120 s: a point each 2 s): a longer window's steps could end
    # before the second denial was scraped, and rate() draws nothing from a single sample.
    pages = {
        "admin": {
            "admin-waste": "/console/admin/waste?window=120",
            "admin-sla": "/console/admin/sla?window=120",
            "admin-enforcement-rates": "/console/admin/enforcement?window=120",
        },
        "acme-ui": {
            "tenant-waste": "/console/tenants/acme-ui/waste?window=120",
            "tenant-sla": "/console/tenants/acme-ui/sla?window=120",
        },
    }
    for account, shots in pages.items():
        walk.sign_in(account, setup.worker.admin_token if account == "admin" else setup.tokens[account])
        for shot, path in shots.items():
            walk.open(path)
            figures = browser.find_elements(By.CSS_SELECTOR, "figure.chart")
            assert figures, walk.text()[:2000]
            for figure in figures:
                name = figure.get_attribute("id")
                assert not figure.find_elements(By.CSS_SELECTOR, ".error"), (path, name, figure.text)
                assert figure.find_elements(By.CSS_SELECTOR, "svg polyline"), (path, name, figure.text)
            walk.shot(shot)
        walk.sign_out()

"""The usage page against a real Prometheus scraping the telemetry simulator (DCGM series) and the
worker's `/metrics/tenants` with a metrics token (as docs/metrics.md deploys it): the
entitled-and-held chart and the queue chart hold what `/api/v1/query_range` answers for the same
query, and what simpler queries of the raw series say; a quota change is a step in the entitled
line; a tenant's page holds its own series only, whatever it asks; the tenant-labelled gauges need
a metrics or the admin's token."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from pdp.product.console.pages.usage.charts import entitled_and_held_promql, queued_promql
from pdp.product.console.pages.usage.views import owners_of
from tests.artifacts import cached_artifact
from tests.lifecycle.harness import EXAMPLES, Worker, onboard, tenant_doc
from tests.product.console.browser import Walk, needs_browser
from tests.product.console.chart_tables import chart_table
from tests.product.console.web import Session
from tests.telemetry.conftest import Telemetry, running_telemetry, wait_for

# acme-ui: the acme-eu document (4 H100-80GB); globex-ui: globex's (8 H100-80GB, 4 A100-40GB).
TENANTS = {
    "acme-ui": tenant_doc("acme-eu", "acme-ui", ["acme-ui-prod"], isolation="shared"),
    "globex-ui": tenant_doc("globex", "globex-ui", ["globex-ui-ml", "globex-ui-dev"]),
}
GPU_CLASSES = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]["gpu_classes"]
# GPUs held: acme-ui 3 H100; globex-ui 2 H100 (in two namespaces), 1 A100 and 1 L4, a model no
# class of the fleet names; and a GPU of a namespace no tenant owns, which no tenant's line counts.
SCENARIO: dict[str, object] = {
    "scenario": {
        "name": "console-usage",
        "nodes": [
            {"name": "eu-shared-1", "model": "NVIDIA H100 80GB HBM3", "gpus": 8, "allocations": [
                {"gpus": [0, 1, 2], "namespace": "acme-ui-prod", "pod": "chat-7d9c8b6f5-x2k4q",
                 "container": "vllm", "utilization": 70, "memory_used_mib": 30000},
                {"gpus": [3], "namespace": "globex-ui-ml", "pod": "train-0", "container": "trainer",
                 "utilization": 90, "memory_used_mib": 60000},
                {"gpus": [4], "namespace": "globex-ui-dev", "pod": "notebook-0", "container": "jupyter",
                 "utilization": 1, "memory_used_mib": 100},
                {"gpus": [5], "namespace": "nobodys-ns", "pod": "stray-0", "container": "x",
                 "utilization": 50, "memory_used_mib": 100},
            ]},
            {"name": "us-spot-1", "model": "NVIDIA A100-SXM4-40GB", "gpus": 8, "memory_mib": 40960,
             "allocations": [
                {"gpus": [7], "namespace": "globex-ui-ml", "pod": "eval-5f6d7c8b9-qw8rt",
                 "container": "trainer", "utilization": 40, "memory_used_mib": 20000},
            ]},
            {"name": "lab-1", "model": "NVIDIA L4", "gpus": 1, "memory_mib": 23034, "allocations": [
                {"gpus": [0], "namespace": "globex-ui-ml", "pod": "embed-0", "container": "vllm",
                 "utilization": 10, "memory_used_mib": 5000},
            ]},
        ],
    }
}  # fmt: skip
HELD = {  # the scenario's GPUs per tenant and class
    ("acme-ui", "H100-80GB"): 3,
    ("globex-ui", "H100-80GB"): 2,
    ("globex-ui", "A100-40GB"): 1,
    ("globex-ui", "other: NVIDIA L4"): 1,
}
ENTITLED = {("acme-ui", "H100-80GB"): 4, ("globex-ui", "H100-80GB"): 8, ("globex-ui", "A100-40GB"): 4}
OWNERS = {name: doc["tenant"]["namespaces"] for name, doc in TENANTS.items()}
WINDOW = 120  # a point each 2 s


class Setup:
    def __init__(self, telemetry: Telemetry, worker: Worker, tokens: dict[str, str]) -> None:
        self.telemetry, self.worker, self.tokens = telemetry, worker, tokens


@pytest.fixture(scope="module")
def prometheus_binary() -> Path:
    return cached_artifact("build-prometheus")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, prometheus_binary: Path) -> Iterator[Setup]:
    worker = Worker(tmp_path_factory.mktemp("console"))
    # Prometheus reads the file at each scrape: the token is written once the worker issues it.
    token_file = tmp_path_factory.mktemp("prometheus-secrets") / "pdp-metrics-token"
    tenants_job: dict[str, object] = {
        "job_name": "pdp-tenants",
        "metrics_path": "/metrics/tenants",
        "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
        "static_configs": [{"targets": [f"127.0.0.1:{worker.port}"]}],
    }
    with running_telemetry(
        tmp_path_factory.mktemp("telemetry"), prometheus_binary, scrape_configs=[tenants_job]
    ) as telemetry:

        def held() -> bool:
            got = telemetry.client.query("count by (namespace) (DCGM_FI_DEV_GPU_UTIL)")
            return {s.labels.get("namespace") for s in got} >= {
                "acme-ui-prod",
                "globex-ui-ml",
                "globex-ui-dev",
            }

        telemetry.play(SCENARIO, "the tenants' GPUs scraped", held)
        worker.opts["prometheus"] = telemetry.prometheus_url
        worker.start(timeout=180)
        try:
            with worker.client() as c:
                issued = c.post("/v1/admin/metrics-tokens", json={})
            assert issued.status_code == 201, issued.text
            token_file.touch(mode=0o600)
            token_file.write_text(issued.json()["token"])
            tokens = {name: onboard(worker, doc) for name, doc in TENANTS.items()}

            def entitlements_scraped_twice() -> bool:
                counted = telemetry.client.query(
                    'count_over_time(gpupaas_pdp_tenant_entitled_gpus{job="pdp-tenants"}[1m])'
                )
                seen = {(s.labels["tenant"], s.labels["gpu_class"]): s.value for s in counted}
                return set(seen) >= set(ENTITLED) and min(seen[k] for k in ENTITLED) >= 2

            wait_for("both tenants' entitlements scraped twice", entitlements_scraped_twice)
            yield Setup(telemetry, worker, tokens)
        finally:
            worker.stop()


def _login(setup: Setup, account: str) -> Session:
    s = Session(setup.worker)
    token = setup.worker.admin_token if account == "admin" else setup.tokens[account]
    assert s.login(account, token).status_code == 303
    return s


def _page(setup: Setup, account: str, path: str) -> str:
    s = _login(setup, account)
    try:
        got = s.get(path)
        assert got.status_code == 200, got.text
        return got.text
    finally:
        s.close()


def _holds_what_prometheus_answers(
    setup: Setup, page: str, figure: str, promql: str, keys: tuple[str, ...]
) -> tuple[list[str], list[tuple[float, list[float | None]]]]:
    """The table of `figure` is what Prometheus answers for `promql` over the same times."""
    labels, rows = chart_table(page, figure)
    assert rows, figure
    start, end = rows[0][0], rows[-1][0]
    found = setup.telemetry.client.query_range(promql, start=start, end=end, step=WINDOW / 60)
    expected = {"/".join(s.labels[k] for k in keys): dict(s.values) for s in found}
    assert sorted(expected) == sorted(labels), figure
    for at, values in rows:
        for label, value in zip(labels, values, strict=True):
            assert value == expected[label].get(at), (figure, label, at, value)
    return labels, rows


def _answered(setup: Setup, series: str, value: float) -> bool:
    """Prometheus answers `value` for `series` 2 s ago already: a chart asked from now on ends on a
    whole 2 s step no earlier than that, so its last point holds `value`."""
    got = setup.telemetry.client.query(series, at=time.time() - WINDOW / 60)
    return len(got) == 1 and got[0].value == value


def _column(labels: list[str], rows: list[tuple[float, list[float | None]]], label: str) -> list[float]:
    i = labels.index(label)
    return [v for _, values in rows if (v := values[i]) is not None]


def test_the_tenant_gauges_need_a_metrics_or_admin_token(setup: Setup) -> None:
    url = f"{setup.worker.url}/metrics/tenants"
    assert httpx.get(url, timeout=10).status_code == 401
    as_tenant = httpx.get(url, headers={"Authorization": f"Bearer {setup.tokens['acme-ui']}"}, timeout=10)
    assert as_tenant.status_code == 403
    with setup.worker.client() as c:
        text = c.get("/metrics/tenants").text
        open_metrics = c.get("/metrics").text
    assert 'gpupaas_pdp_tenant_entitled_gpus{gpu_class="A100-40GB",tenant="globex-ui"} 4.0' in text
    assert 'gpupaas_pdp_tenant_queued_deployments{gpu_class="H100-80GB",tenant="acme-ui"} 0.0' in text
    # The unauthenticated /metrics still names no tenant.
    assert "tenant_entitled" not in open_metrics and "acme-ui" not in open_metrics


def _change_quota(setup: Setup, tenant: str, entitlements: dict[str, int]) -> None:
    with setup.worker.client() as c:
        r = c.post(f"/v1/tenants/{tenant}/quotas", json={"entitlements": entitlements})
    assert r.status_code == 202, r.text
    if r.json().get("status") != "applied":
        assert setup.worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"


def test_the_admins_chart_holds_entitlements_and_gpus_held_and_a_quota_step(setup: Setup) -> None:
    # globex-ui gives back 2 H100: the entitled line steps from 8 to 6 once Prometheus scraped it.
    _change_quota(setup, "globex-ui", {"H100-80GB": 6, "A100-40GB": 4})
    # The page's query: every active tenant's namespaces, the bundle's example tenants' too (whose
    # GPUs of the simulator's first scenario may still be in the window).
    with setup.worker.client() as c:
        owners = owners_of(c.get("/v1/tenants").json())
    assert owners.keys() >= TENANTS.keys()
    promql = entitled_and_held_promql(None, owners, GPU_CLASSES)
    series = 'gpupaas_pdp_tenant_entitled_gpus{tenant="globex-ui", gpu_class="H100-80GB"}'
    wait_for("the new quota scraped", lambda: _answered(setup, series, 6))
    page = _page(setup, "admin", f"/console/admin/usage?window={WINDOW}")
    assert "No chart" not in page, page
    labels, rows = _holds_what_prometheus_answers(
        setup, page, "entitled-held", promql, ("tenant", "gpu_class", "measure")
    )
    last = dict(zip(labels, rows[-1][1], strict=True))
    for (tenant, gpu_class), gpus in HELD.items():
        assert last[f"{tenant}/{gpu_class}/held"] == gpus, (tenant, gpu_class, last)
    assert last["acme-ui/H100-80GB/entitled"] == 4 and last["globex-ui/A100-40GB/entitled"] == 4
    # The step: 8 before the change, 6 after, in this order.
    steps = _column(labels, rows, "globex-ui/H100-80GB/entitled")
    assert steps[-1] == 6 and 8 in steps and steps.index(8) < steps.index(6), steps
    # The same counts from the raw series, asked without the chart's classing: modelName as
    # dcgm-exporter reports it, namespaces as the tenants' documents name them.
    raw = setup.telemetry.client.query(
        'count(DCGM_FI_DEV_GPU_UTIL{namespace=~"globex-ui-ml|globex-ui-dev",'
        ' modelName="NVIDIA H100 80GB HBM3"})'
    )
    assert raw[0].value == last["globex-ui/H100-80GB/held"]
    # No line for a namespace no tenant owns; the L4 named by its model, not dropped.
    assert "nobodys-ns" not in page and "globex-ui/other: NVIDIA L4/held" in labels


def test_a_tenant_sees_its_own_series_only_whatever_it_asks(setup: Setup) -> None:
    promql = entitled_and_held_promql("acme-ui", {"acme-ui": OWNERS["acme-ui"]}, GPU_CLASSES)
    s = _login(setup, "acme-ui")
    try:
        for path in (
            f"/console/tenants/acme-ui/usage?window={WINDOW}",
            # crafted parameters the page does not take: ignored, never put in a query
            f"/console/tenants/acme-ui/usage?window={WINDOW}&tenant=globex-ui&namespace=globex-ui-ml",
            f'/console/tenants/acme-ui/usage?window={WINDOW}&query=gpupaas_pdp_tenant_entitled_gpus{{tenant="globex-ui"}}',
        ):
            got = s.get(path)
            assert got.status_code == 200, (path, got.text)
            assert "globex" not in got.text, path
            labels, _ = _holds_what_prometheus_answers(
                setup, got.text, "entitled-held", promql, ("tenant", "gpu_class", "measure")
            )
            assert labels == ["acme-ui/H100-80GB/entitled", "acme-ui/H100-80GB/held"], labels
        # Another tenant's page, a name that is none, an admin page, a window that is no number.
        for path, refused in (
            ("/console/tenants/globex-ui/usage", 404),
            ('/console/tenants/globex-ui"}or{x="/usage', 404),
            ("/console/tenants/acme-ui%2F..%2Fglobex-ui/usage", 404),
            ("/console/admin/usage", 403),
            ("/console/tenants/acme-ui/usage?window=1h", 422),
        ):
            got = s.get(path)
            assert got.status_code == refused, (path, got.status_code)
            assert "globex-ui/" not in got.text and "<svg" not in got.text, path
    finally:
        s.close()


def test_the_queue_chart_holds_the_deployments_waiting(setup: Setup) -> None:
    # globex-ui's H100 deployment cannot be placed and nothing may be preempted for it: queued.
    deployment = {"deployment": "batch", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 2}
    with setup.worker.client() as c:
        r = c.post(
            "/v1/capacity/exhaustion",
            json={"tenant": "globex-ui", "deployment": deployment, "gpus": 2, "queue": True},
        )
    assert r.status_code == 202, r.text
    out: dict[str, Any] = setup.worker.wait_workflow(r.json()["workflow_id"])["output"]
    assert out["status"] == "queued", out
    series = 'gpupaas_pdp_tenant_queued_deployments{tenant="globex-ui", gpu_class="H100-80GB"}'
    wait_for("the queued deployment scraped", lambda: _answered(setup, series, 1))
    page = _page(setup, "admin", f"/console/admin/usage?window={WINDOW}")
    labels, rows = _holds_what_prometheus_answers(
        setup, page, "queue-depth", queued_promql(None), ("tenant", "gpu_class")
    )
    waiting = _column(labels, rows, "globex-ui/H100-80GB")
    assert waiting[-1] == 1 and waiting[0] == 0, waiting  # 0 before it was queued, 1 since
    assert (
        set(_column(labels, rows, "acme-ui/H100-80GB"))
        == set(_column(labels, rows, "globex-ui/A100-40GB"))
        == {0}
    )
    # acme-ui's page: its own queue only.
    own = _page(setup, "acme-ui", f"/console/tenants/acme-ui/usage?window={WINDOW}")
    labels, _ = _holds_what_prometheus_answers(
        setup, own, "queue-depth", queued_promql("acme-ui"), ("tenant", "gpu_class")
    )
    assert labels == ["acme-ui/H100-80GB"]


@needs_browser
def test_the_usage_charts_draw_real_series_in_a_browser(setup: Setup, browser: WebDriver) -> None:
    """The usage page in Chromium for an admin and a tenant, after the tests above put series behind
    each chart: every chart drawn, no Prometheus problem, axe-clean; with PDP_CONSOLE_SCREENSHOTS,
    the screenshots in docs/console/."""
    walk = Walk(browser, setup.worker.url)
    pages = {
        "admin": {"admin-usage": f"/console/admin/usage?window={WINDOW}"},
        "acme-ui": {"tenant-usage": f"/console/tenants/acme-ui/usage?window={WINDOW}"},
    }
    for account, shots in pages.items():
        walk.sign_in(account, setup.worker.admin_token if account == "admin" else setup.tokens[account])
        for shot, path in shots.items():
            walk.open(path)
            figures = browser.find_elements(By.CSS_SELECTOR, "figure.chart")
            assert {f.get_attribute("id") for f in figures} == {
                "entitled-held",
                "queue-depth",
                "kueue-pending",
            }
            for figure in figures:
                name = figure.get_attribute("id")
                assert not figure.find_elements(By.CSS_SELECTOR, ".error"), (path, name, figure.text)
                if name == "kueue-pending":  # no Kueue here (tests/e2e/test_kueue_e2e.py charts its series)
                    assert "No data over this window." in figure.text, (path, figure.text)
                    continue
                assert figure.find_elements(By.CSS_SELECTOR, "svg polyline"), (path, name, figure.text)
            if account != "admin":
                assert "globex" not in walk.text()
            walk.shot(shot)
        walk.sign_out()

"""The console's charts against a real Prometheus scraping the telemetry simulator: the waste
page's table holds what `/api/v1/query_range` answers for the same query, a tenant's chart shows
its own namespaces only, and a Prometheus that does not answer is said on the page."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pdp.product.console.charts.source import NoChart, range_chart
from pdp.product.console.waste_views import idle_promql
from tests.artifacts import cached_artifact
from tests.lifecycle.harness import Worker, onboard, tenant_doc
from tests.ports import free_port
from tests.product.console.web import Session
from tests.telemetry.conftest import Telemetry, running_telemetry

ROW = re.compile(r'<tr><th scope="row">([0-9: -]+)</th>(.*?)</tr>', re.S)
CELL = re.compile(r'<td class="num">([^<]*)</td>')
HEAD = re.compile(r'<th scope="col">([^<]*)</th>')
# GPUs the simulator's first scenario (examples/telemetry/waste.yaml, scraped before this one is
# played) did not hold: a GPU that changed pods within the waste report's hour would be counted
# once, for either.
SCENARIO = {
    "scenario": {
        "name": "console-waste",
        "nodes": [
            {"name": "us-spot-1", "model": "NVIDIA A100-SXM4-40GB", "gpus": 8, "memory_mib": 40960,
             "allocations": [
                {"gpus": [4, 5, 6], "namespace": "acme-ui-prod", "pod": "eval-5f6d7c8b9-qw8rt",
                 "container": "trainer", "utilization": 0, "memory_used_mib": 0},
                {"gpus": [7], "namespace": "acme-ui-prod", "pod": "chat-7d9c8b6f5-x2k4q",
                 "container": "vllm", "utilization": 90, "memory_used_mib": 30000},
            ]},
            {"name": "eu-shared-1", "model": "NVIDIA H100 80GB HBM3", "gpus": 8, "allocations": [
                {"gpus": [3, 4], "namespace": "globex-ui-ml", "pod": "notebook-0",
                 "container": "jupyter", "utilization": 1, "memory_used_mib": 100},
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
    with running_telemetry(tmp_path_factory.mktemp("telemetry"), prometheus_binary) as telemetry:

        def both_idle() -> bool:
            got = telemetry.client.query(idle_promql(None))
            return {s.labels.get("namespace") for s in got} >= {"acme-ui-prod", "globex-ui-ml"}

        telemetry.play(SCENARIO, "both tenants' idle GPUs scraped", both_idle)
        worker = Worker(tmp_path_factory.mktemp("console"), prometheus=telemetry.prometheus_url)
        worker.start(timeout=180)
        try:
            tokens = {
                "acme-ui": onboard(
                    worker, tenant_doc("acme-eu", "acme-ui", ["acme-ui-prod"], isolation="shared")
                ),
                "globex-ui": onboard(worker, tenant_doc("globex", "globex-ui", ["globex-ui-ml"])),
            }
            yield Setup(telemetry, worker, tokens)
        finally:
            worker.stop()


def _table(page: str, figure: str) -> tuple[list[str], list[tuple[float, list[float | None]]]]:
    """The labels and rows (time, values) of the chart table in the figure `figure` of `page`."""
    part = page.split(f'id="{figure}"', 1)[1].split("</figure>", 1)[0]
    labels = [html.unescape(h) for h in HEAD.findall(part)[1:]]
    rows = []
    for when, cells in ROW.findall(part):
        at = datetime.strptime(when, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
        rows.append((at, [None if c == "\u2013" else float(c.replace(",", "")) for c in CELL.findall(cells)]))
    return labels, rows


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
    labels, rows = _table(page, "idle-gpus")
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
    labels, rows = _table(page, "idle-gpus")
    assert labels == ["acme-ui-prod"] and rows and "globex" not in page
    assert _idle_now(page, "waste-tenants") == {"acme-ui": 3}
    assert s.get("/console/tenants/globex-ui/waste").status_code in (403, 404)
    assert s.get("/console/admin/waste").status_code == 403
    s.close()


def test_an_unreachable_prometheus_is_said_not_raised() -> None:
    got = range_chart("Idle", "GPUs", "up", lambda labels: "x", url=f"http://127.0.0.1:{free_port()}")
    assert isinstance(got, NoChart) and "did not answer" in got.problem and "unreachable" in got.problem


def test_the_sla_page_reads_the_same_prometheus(setup: Setup) -> None:
    s = _login(setup, "acme-ui")
    page = s.get("/console/tenants/acme-ui/sla?window=120").text
    s.close()
    # Measured (no deployment of this lifecycle runs, so none is listed); the chart asked Prometheus,
    # which has no SLA recording rules loaded here: no series, said so, and no error.
    assert "No SLA measurement" not in page and "No running deployment is measured" in page, page
    assert 'id="failed-ratio"' in page and "No data over this window" in page and "No chart" not in page

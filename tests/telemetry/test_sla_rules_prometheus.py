"""The rule file of `pdp sla rules` loaded into a real Prometheus (rule_files) scraping the simulator,
everything every second, windows of seconds: the recording rules evaluate without error, the
burn-rate alert fires for the deployment whose latency is raised and for no healthy one, and the
recorded burn rates are the ones pdp's own sla_report computes from the same data."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from pdp.telemetry.sla import LATENCY_BUDGET, SlaReport, fleet_windows, sla_report
from pdp.telemetry.sla_rules import ALERT, RECORDS
from tests.telemetry.conftest import ROOT, Telemetry, running_telemetry, wait_for

ALERTING = {"fast": {"long": "20s", "short": "5s"}, "slow": {"long": "40s", "short": "10s"}, "period": "10m"}
WINDOWS = fleet_windows({"sla_alerting": ALERTING})
TENANTS: dict[str, Any] = {
    "slr-ent": {"name": "slr-ent", "tier": "enterprise", "namespaces": ["slr-prod"],
                "sla": {"class": "latency-critical", "latency_p99_ms": 500, "availability": 99.9}},
    "slr-std": {"name": "slr-std", "tier": "standard", "namespaces": ["slr-std"],
                "sla": {"class": "throughput", "latency_p99_ms": 500, "availability": 99.5}},
    "slr-spot": {"name": "slr-spot", "tier": "spot", "namespaces": ["slr-batch"],
                 "sla": {"class": "best-effort"}},
}  # fmt: skip
BUDGETS = {
    "slr-ent": {"latency": LATENCY_BUDGET, "availability": 0.001},
    "slr-std": {"latency": LATENCY_BUDGET, "availability": 0.005},
}
SLOW_POD = "chat-7d9c8b6f5-x2k4q"
PODS = [  # namespace, pod, GPUs, requests per second, latency
    ("slr-prod", SLOW_POD, [0], 40, 0.2),
    ("slr-prod", "chat-7d9c8b6f5-b2c4d", [1], 40, 0.2),
    ("slr-prod", "search-5b7c9d6f8-m2n4p", [2], 20, 0.2),
    ("slr-std", "embed-6f7d8c9b5-t2v4w", [3], 20, 0.2),
    ("slr-batch", "gen-5f6d7c8b9-qw8rt", [4, 5], 10, 4.0),
]


def _scenario() -> dict[str, Any]:
    allocations = [
        {"gpus": gpus, "namespace": ns, "pod": pod, "utilization": 80, "memory_used_mib": 60000,
         "serving": {"model_name": "llama", "requests_per_second": rps, "latency_seconds": latency}}
        for ns, pod, gpus, rps, latency in PODS
    ]  # fmt: skip
    nodes = [{"name": "eu-shared-1", "model": "NVIDIA H100 80GB HBM3", "gpus": 8, "allocations": allocations}]
    return {"scenario": {"name": "sla-rules", "nodes": nodes}}


def _write_config(root: Path) -> tuple[Path, Path]:
    """A tenant folder and a fleet with these windows in its sla_alerting, as an operator has them."""
    folder = root / "tenants"
    folder.mkdir()
    for name, policy in TENANTS.items():
        doc = {"tenant": {**policy, "isolation": "shared", "data_residency": "any", "allow_preemption": False,
                          "allow_gpu_sharing": False, "entitlements": {"H100-80GB": 4}}}  # fmt: skip
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    fleet = yaml.safe_load((ROOT / "examples" / "fleet.yaml").read_text())
    fleet["fleet"]["sla_alerting"] = ALERTING
    (root / "fleet.yaml").write_text(yaml.safe_dump(fleet))
    return folder, root / "fleet.yaml"


@pytest.fixture(scope="module")
def ruled(tmp_path_factory: pytest.TempPathFactory, prometheus_binary: Path) -> Iterator[Telemetry]:
    """Prometheus with the rules `pdp sla rules` wrote for TENANTS, the simulator serving PODS."""
    root = tmp_path_factory.mktemp("sla-rules")
    tenants, fleet = _write_config(root)
    rules = root / "sla.rules.yml"
    made = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "sla", "rules", "--tenants", str(tenants), "--fleet", str(fleet),
         "-o", str(rules)],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=120,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with running_telemetry(root, prometheus_binary, [rules]) as telemetry:

        def recorded() -> bool:
            # Every deployment with an SLA has its ratio recorded over the slow alert's long window.
            got = _recorded(telemetry, "latency", WINDOWS.slow_long)
            return {k[:2] for k, v in got.items() if not math.isnan(v)} >= {
                ("slr-ent", "chat"), ("slr-ent", "search"), ("slr-std", "embed"),
            }  # fmt: skip

        yield telemetry.play(_scenario(), "the recording rules' first ratios", recorded, timeout=120)


def _api(telemetry: Telemetry, path: str, **params: str) -> Any:
    reply = httpx.get(f"{telemetry.prometheus_url}/api/v1/{path}", params=params, timeout=10)
    reply.raise_for_status()
    return reply.json()["data"]


def _recorded(telemetry: Telemetry, kind: str, window: str) -> dict[tuple[str, str, str], float]:
    """(tenant, deployment, tier) -> the recorded bad fraction over `window`, now."""
    samples = telemetry.client.query(RECORDS[kind].format(window=window))
    return {(s.labels["tenant"], s.labels["deployment"], s.labels["tier"]): s.value for s in samples}


def _firing(telemetry: Telemetry) -> list[dict[str, Any]]:
    alerts = _api(telemetry, "alerts")["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == ALERT and a["state"] == "firing"]


def _report(telemetry: Telemetry) -> SlaReport:
    return sla_report(telemetry.client, TENANTS, WINDOWS)


def test_the_rules_load_and_evaluate_without_error(ruled: Telemetry) -> None:
    groups = {g["name"]: g for g in _api(ruled, "rules")["groups"]}
    assert set(groups) == {"gpupaas-sla-slr-ent", "gpupaas-sla-slr-std"}  # spot promises nothing
    for group in groups.values():
        # 4 windows x 2 objectives recorded, fast and slow x 2 objectives alerting.
        kinds = [r["type"] for r in group["rules"]]
        assert kinds.count("recording") == 8 and kinds.count("alerting") == 4, kinds
        broken = [(r["name"], r.get("lastError")) for r in group["rules"] if r["health"] != "ok"]
        assert not broken, broken
    # Healthy servers: nothing slower than 500 ms, nothing failed: every ratio 0, no alert.
    for kind in ("latency", "availability"):
        assert set(_recorded(ruled, kind, WINDOWS.fast_short).values()) == {0.0}
    assert _firing(ruled) == []


def test_raised_latency_fires_the_burn_alert_for_that_deployment_only(ruled: Telemetry) -> None:
    raised = {"namespace": "slr-prod", "pod": SLOW_POD, "latency_seconds": 2.0, "error_ratio": 0.05}
    assert ruled.control("serving", raised).status_code == 200
    changed = time.monotonic()
    try:

        def chat_alerts() -> set[tuple[str, str]]:
            return {
                (a["labels"]["objective"], a["labels"]["severity"])
                for a in _firing(ruled)
                if (a["labels"]["tenant"], a["labels"]["deployment"]) == ("slr-ent", "chat")
            }

        wait_for("Prometheus's latency burn alert on slr-ent/chat", lambda: any(
            objective == "latency" for objective, _ in chat_alerts()), timeout=90)  # fmt: skip
        # Half of chat's requests take 2 s against 500 ms: its burn rate goes to about 50x; 2.5%
        # of them fail against 0.1% allowed, about 25x. Both objectives fire, fast and slow.
        wait_for("every burn alert on slr-ent/chat", lambda: chat_alerts() == {
            ("latency", "fast"), ("latency", "slow"), ("availability", "fast"), ("availability", "slow")
        }, timeout=90)  # fmt: skip
        firing = _firing(ruled)
        # The healthy deployments, of the same tenant and of another, fire nothing.
        assert {(a["labels"]["tenant"], a["labels"]["deployment"]) for a in firing} == {("slr-ent", "chat")}
        latency_fast = next(
            a for a in firing if (a["labels"]["objective"], a["labels"]["severity"]) == ("latency", "fast")
        )
        labels = latency_fast["labels"]
        assert (labels["tier"], labels["namespace"]) == ("enterprise", "slr-prod"), labels
        notes = latency_fast["annotations"]
        assert notes["sla"] == "p99 latency under 500 ms" and notes["windows"] == "20s 5s"
        assert notes["summary"].startswith("slr-ent/chat burns its latency error budget at "), notes
        assert "x over 20s (fast alert)" in notes["summary"]
        assert float(latency_fast["value"]) > 14.4
        assert "of tenant slr-ent, tier enterprise" in notes["description"]

        _the_recorded_burn_rates_are_the_reports(ruled, changed)
    finally:
        healthy = {"namespace": "slr-prod", "pod": SLOW_POD, "latency_seconds": 0.2, "error_ratio": 0.0}
        assert ruled.control("serving", healthy).status_code == 200


def _the_recorded_burn_rates_are_the_reports(ruled: Telemetry, changed: float) -> None:
    """Once the slow alert's long window holds only the raised latency, the bad fractions are
    steady: every recorded burn rate equals sla_report's of the same window.

    The tolerance: the rule's value is from its last evaluation (at most about a second old,
    evaluation every second), the report's from its queries now; both are rate() over the same
    window of the same counters from one scrape target, so at a steady state they differ only by
    the requests counted in the second between the two instants: the simulator counts whole
    requests, 20-40 a second per server, about 1% of a 5 s window's 200 and less of the longer
    ones. 3% relative (plus 0.05 absolute for a rate near 0) leaves that noise room and still
    fails a different computation: the bucket next to 500 ms (0.8 s) instead of interpolation or
    one replica's ratio instead of the deployment's would each be off by far more. Measured
    (load 7): equal for latency, 6e-14 apart for availability (0.001 against (100 - 99.9) / 100)."""
    slow_long = 40.0
    wait_for(
        "the slow alert's long window to hold only the raised latency",
        lambda: time.monotonic() > changed + slow_long + 3,
        timeout=slow_long + 30,
    )
    report = _report(ruled)
    rows = {(r.tenant, r.deployment): r for r in report.rows if r.tenant in BUDGETS}
    compared = 0
    for kind in ("latency", "availability"):
        for window in dict.fromkeys(
            [WINDOWS.fast_long, WINDOWS.fast_short, WINDOWS.slow_long, WINDOWS.slow_short]
        ):
            for (tenant, deployment, _tier), ratio in _recorded(ruled, kind, window).items():
                expected = rows[(tenant, deployment)].burn[kind][window]
                assert expected is not None
                got = ratio / BUDGETS[tenant][kind]
                assert got == pytest.approx(expected, rel=0.03, abs=0.05), (kind, window, tenant, deployment)
                compared += 1
    assert compared == 2 * 4 * 3  # two objectives, four windows, chat, search and embed
    chat = rows[("slr-ent", "chat")]
    # The figures themselves: half the requests slower (50x the 1% budget), 2.5% failed (25x 0.1%).
    assert chat.burn["latency"][WINDOWS.slow_long] == pytest.approx(50, rel=0.1)
    assert chat.burn["availability"][WINDOWS.slow_long] == pytest.approx(25, rel=0.15)

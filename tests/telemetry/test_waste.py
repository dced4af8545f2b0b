"""Waste detection: `pdp waste` over a real Prometheus scraping the simulator's waste scenario.

The scenario (examples/telemetry/waste.yaml): acme-eu's eval pod holds 4 idle H100s on its dedicated
pool; globex's notebook holds 2 idle H100s on the shared pool, and its embedding server 1 GPU with a
model loaded (idle, but its memory is in use, so not waste); acme-eu's chat and initech's ETL work.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pdp.cli import main
from pdp.telemetry.waste import Thresholds, deployment_of, duration_seconds, idle_expression
from tests.ports import free_port
from tests.telemetry.conftest import ROOT, Telemetry, wait_for

TENANTS = ROOT / "examples" / "tenants"
FLEET = ROOT / "examples" / "fleet.yaml"


def pdp_waste(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["waste", "--tenants", str(TENANTS), "--fleet", str(FLEET), *args])
    return status, out.getvalue(), err.getvalue()


def report(telemetry: Telemetry, *extra: str) -> dict[str, Any]:
    status, out, err = pdp_waste(
        "--prometheus", telemetry.prometheus_url, "--window", "1m", "--step", "1s", "--format", "json", *extra
    )
    assert status == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def test_idle_allocated_gpus_are_reported_per_tenant_deployment_and_pool(telemetry: Telemetry) -> None:
    wait_for("5 scrapes", lambda: telemetry.scrapes() >= 5)
    got = report(telemetry)
    tenants = got["tenants"]
    assert tenants["acme-eu"]["idle_gpus"] == 4
    assert tenants["acme-eu"]["deployments"] == ["acme-staging/eval"]
    assert tenants["globex"]["idle_gpus"] == 2
    assert tenants["globex"]["deployments"] == ["globex-ml/notebook-0"]  # the loaded embedder is not waste
    assert tenants["initech-spot"]["idle_gpus"] == 0 and tenants["initech-spot"]["wasted_gpu_hours"] == 0
    # Every GPU series comes from the same scrapes, so 4 idle GPUs waste exactly twice what 2 do.
    assert tenants["acme-eu"]["wasted_gpu_hours"] > 0
    assert tenants["acme-eu"]["wasted_gpu_hours"] == pytest.approx(
        2 * tenants["globex"]["wasted_gpu_hours"], rel=1e-3
    )
    # At most the window: 4 GPUs x 1 minute.
    assert tenants["acme-eu"]["wasted_gpu_hours"] <= 4 / 60 + 1e-9
    pools = {p["pool"]: p for p in got["pools"]}
    assert pools["acme-h100-dedicated"]["idle_gpus"] == 4 and pools["eu-h100-shared"]["idle_gpus"] == 2
    assert pools["us-a100-spot"]["idle_gpus"] == 0
    deployments = {(d["namespace"], d["deployment"]): d for d in got["deployments"]}
    assert deployments[("acme-prod", "chat")]["idle_gpus"] == 0
    assert {g["node"] for g in got["gpus"] if g["idle_now"]} == {"eu-acme-1", "eu-shared-1"}


def test_a_gpu_put_to_work_leaves_the_report(telemetry: Telemetry) -> None:
    for gpu in (1, 2):
        answer = telemetry.control("gpu", {"node": "eu-shared-1", "gpu": gpu, "utilization": 95})
        assert answer.status_code == 200, answer.text

    def globex_busy() -> bool:
        return report(telemetry, "--window", "5s")["tenants"]["globex"]["idle_gpus"] == 0

    wait_for("the notebook's GPUs to read busy", globex_busy)
    got = report(telemetry, "--window", "5s")
    assert got["tenants"]["acme-eu"]["idle_gpus"] == 4  # the others did not change


def test_the_table_names_each_tenant_and_the_metrics_file_carries_the_figures(
    telemetry: Telemetry, tmp_path: Path
) -> None:
    metrics = tmp_path / "textfile" / "waste.prom"
    status, out, err = pdp_waste(
        "--prometheus",
        telemetry.prometheus_url,
        "--window",
        "1m",
        "--step",
        "1s",
        "--metrics-file",
        str(metrics),
    )
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(
        "GPUs allocated but idle over the last 1m (utilization < 5%, memory < 1024 MiB"
    )
    (acme,) = [line for line in lines if line.startswith("acme-eu ")]
    assert acme.split()[2] == "4" and acme.endswith("acme-staging/eval")
    assert any(line.startswith("acme-h100-dedicated ") for line in lines)
    assert metrics.stat().st_mode & 0o777 == 0o600
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}

    def by_tenant_pool(name: str) -> dict[tuple[str, str], float]:
        return {(s.labels["tenant"], s.labels["pool"]): s.value for s in families[name].samples}

    idle = by_tenant_pool("gpupaas_pdp_waste_idle_gpus")
    assert idle[("acme-eu", "acme-h100-dedicated")] == 4
    hours = by_tenant_pool("gpupaas_pdp_waste_gpu_hours")
    assert hours[("acme-eu", "acme-h100-dedicated")] > 0
    assert families["gpupaas_pdp_waste_window_seconds"].samples[0].value == 60


def test_an_unreachable_prometheus_fails_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    status, out, err = pdp_waste("--prometheus", url, "--timeout", "2")
    assert status == 1 and out == ""
    assert f"error: {url} is unreachable" in err


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--window", "an hour"), "--window 'an hour': expected a positive duration"),
        (("--window", "0s"), "--window '0s': expected a positive duration"),
        (("--window", "1m", "--step", "5m"), "--step 5m is longer than --window 1m"),
        (("--max-utilization", "120"), "--max-utilization 120.0: expected a percentage from 0 to 100"),
    ],
)
def test_bad_options_are_refused_naming_them(args: tuple[str, ...], error: str) -> None:
    status, _, err = pdp_waste("--prometheus", "http://127.0.0.1:9", *args)
    assert status == 2 and error in err


def test_the_idle_expression_reads_both_thresholds_over_the_window() -> None:
    expression = idle_expression(Thresholds(window="30m", max_utilization=2, max_memory_mib=512))
    assert 'avg_over_time(DCGM_FI_DEV_GPU_UTIL{namespace!=""}[30m]) < 2' in expression
    assert 'avg_over_time(DCGM_FI_DEV_FB_USED{namespace!=""}[30m]) < 512' in expression


def test_deployments_are_named_from_their_pods() -> None:
    assert deployment_of("chat-7d9c8b6f5-x2k4q") == "chat"
    assert deployment_of("llama-serve-6b7c8d9f4-p2m4n") == "llama-serve"
    assert deployment_of("notebook-0") == "notebook-0"  # a StatefulSet's pod stays itself
    assert deployment_of("job-abcdef-12345") == "job-abcdef-12345"  # vowels and 1/3: not a ReplicaSet suffix
    assert duration_seconds("90s") == 90 and duration_seconds("6h") == 21600

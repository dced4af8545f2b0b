"""The telemetry simulator: scenario validation, the DCGM and vLLM series it serves, its control API."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pdp.config.documents import ConfigErrors
from pdp.telemetry.scenario import parse_scenario
from pdp.telemetry.simulator import LATENCY_BUCKETS, serve
from tests.ports import free_port
from tests.telemetry.conftest import ROOT, WASTE_SCENARIO, wait_for

DCGM_LABELS = {"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"}


def _problems(document: Any) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        parse_scenario(document, "s.yaml")
    return [str(e) for e in caught.value.errors]


def _node(**overrides: Any) -> dict[str, Any]:
    return {"name": "n1", "model": "NVIDIA H100 80GB HBM3", "gpus": 2, **overrides}


def test_the_example_scenario_is_valid() -> None:
    scenario = parse_scenario(yaml.safe_load(WASTE_SCENARIO.read_text()))
    assert len(scenario.gpus) == 24
    assert [g.index for g in scenario.pod_gpus("acme-staging", "eval-5f6d7c8b9-qw8rt")] == [2, 3, 4, 5]


@pytest.mark.parametrize(
    ("node", "problem"),
    [
        (_node(gpus=0), "s.yaml: scenario.nodes[0].gpus: 0 is less than the minimum of 1"),
        (_node(name="N_1"), "s.yaml: scenario.nodes[0].name: 'N_1' does not match the expected form"),
        (_node(colour="red"), "s.yaml: scenario.nodes[0].colour: is not a known field"),
        (
            _node(allocations=[{"gpus": [0], "pod": "p"}]),
            "s.yaml: scenario.nodes[0].allocations[0].namespace: is required",
        ),
        (
            _node(allocations=[{"gpus": [0], "namespace": "a", "pod": "p", "utilization": 101}]),
            "s.yaml: scenario.nodes[0].allocations[0].utilization: 101 is greater than the maximum of 100",
        ),
        (
            _node(allocations=[{"gpus": [2], "namespace": "a", "pod": "p"}]),
            "s.yaml: scenario.nodes[0].allocations[0].gpus: GPU 2 does not exist: the node has 2",
        ),
        (
            _node(
                allocations=[
                    {"gpus": [0], "namespace": "a", "pod": "p"},
                    {"gpus": [0], "namespace": "b", "pod": "q"},
                ]
            ),
            "s.yaml: scenario.nodes[0].allocations[1].gpus: GPU 0 is already held by a/p",
        ),
        (
            _node(allocations=[{"gpus": [0], "namespace": "a", "pod": "p", "memory_used_mib": 90000}]),
            "s.yaml: scenario.nodes[0].allocations[0].memory_used_mib: 90000 exceeds the GPU's 81559 MiB",
        ),
    ],
)
def test_a_bad_scenario_is_refused_naming_the_field(node: dict[str, Any], problem: str) -> None:
    problems = _problems({"scenario": {"nodes": [node]}})
    assert any(p.startswith(problem) for p in problems), problems


def test_a_node_listed_twice_is_refused() -> None:
    assert _problems({"scenario": {"nodes": [_node(), _node()]}}) == [
        "s.yaml: scenario.nodes[1].name: node 'n1' is listed twice"
    ]


@pytest.fixture()
def simulator(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    scenario = tmp_path / "scenario.yaml"
    shutil.copy(WASTE_SCENARIO, scenario)
    server = serve(scenario, "127.0.0.1", free_port())
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}", scenario
    server.shutdown()
    server.server_close()


def _families(url: str) -> dict[str, Any]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {f.name: f for f in text_string_to_metric_families(text)}


def _gpu(families: dict[str, Any], metric: str, node: str, gpu: str) -> Any:
    (sample,) = [
        s for s in families[metric].samples if s.labels["Hostname"] == node and s.labels["gpu"] == gpu
    ]
    return sample


def test_gpus_are_served_with_dcgm_exporters_names_and_pod_labels(simulator: tuple[str, Path]) -> None:
    url, _ = simulator
    families = _families(url)
    held = _gpu(families, "DCGM_FI_DEV_GPU_UTIL", "eu-acme-1", "0")
    assert set(held.labels) >= DCGM_LABELS
    assert held.labels["namespace"] == "acme-prod" and held.labels["pod"] == "chat-7d9c8b6f5-x2k4q"
    assert held.labels["container"] == "vllm" and held.labels["modelName"] == "NVIDIA H100 80GB HBM3"
    assert held.labels["UUID"].startswith("GPU-") and held.value == 87
    assert _gpu(families, "DCGM_FI_DEV_FB_USED", "eu-acme-1", "0").value == 71000
    assert _gpu(families, "DCGM_FI_DEV_XID_ERRORS", "eu-acme-1", "0").value == 0
    free = _gpu(families, "DCGM_FI_DEV_GPU_UTIL", "eu-acme-1", "7")
    assert free.labels["pod"] == "" and free.value == 0  # a GPU no pod holds has no pod mapping
    assert families["DCGM_FI_DEV_GPU_UTIL"].type == "gauge"


def test_model_servers_are_served_with_vllms_names(simulator: tuple[str, Path]) -> None:
    url, _ = simulator
    families = _families(url)
    (running,) = [
        s for s in families["vllm:num_requests_running"].samples if s.labels["pod"].startswith("chat")
    ]
    assert running.labels["model_name"] == "llama-3-70b" and running.labels["namespace"] == "acme-prod"
    assert running.value == 12
    latency = families["vllm:e2e_request_latency_seconds"]
    assert latency.type == "histogram"
    buckets = {s.labels["le"] for s in latency.samples if s.name.endswith("_bucket")}
    assert {float(b) for b in buckets} == {*LATENCY_BUCKETS, float("inf")}


def _count(url: str, pod_prefix: str) -> float:
    (count,) = [
        s.value
        for s in _families(url)["vllm:e2e_request_latency_seconds"].samples
        if s.name.endswith("_count") and s.labels["pod"].startswith(pod_prefix)
    ]
    return float(count)


def test_requests_accumulate_at_the_scenarios_rate_and_latency(simulator: tuple[str, Path]) -> None:
    url, _ = simulator
    first = _count(url, "chat")
    wait_for("requests to be served", lambda: _count(url, "chat") >= first + 20, timeout=30)
    samples = _families(url)["vllm:e2e_request_latency_seconds"].samples
    chat = [s for s in samples if s.labels.get("pod", "").startswith("chat")]
    by_le = {s.labels["le"]: s.value for s in chat if s.name.endswith("_bucket")}
    # every request takes 0.4 s: none below the 0.3 bucket, all within 0.5
    assert by_le["0.3"] == 0 and by_le["0.5"] == by_le["+Inf"] > 0


def test_control_changes_a_gpu_and_injects_an_xid_error(simulator: tuple[str, Path]) -> None:
    url, _ = simulator
    answer = httpx.post(
        f"{url}/control/gpu", json={"node": "eu-acme-1", "gpu": 2, "utilization": 55, "xid": 79}
    )
    assert answer.status_code == 200, answer.text
    families = _families(url)
    assert _gpu(families, "DCGM_FI_DEV_GPU_UTIL", "eu-acme-1", "2").value == 55
    assert _gpu(families, "DCGM_FI_DEV_XID_ERRORS", "eu-acme-1", "2").value == 79
    assert _gpu(families, "DCGM_FI_DEV_XID_ERRORS", "eu-acme-1", "3").value == 0


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("gpu", {"node": "eu-acme-1", "gpu": 9, "xid": 79}, "no GPU 9 on node 'eu-acme-1'"),
        (
            "gpu",
            {"node": "eu-acme-1", "gpu": 1, "utilization": 120},
            "utilization: 120 must be between 0 and 100",
        ),
        (
            "gpu",
            {"node": "eu-acme-1", "gpu": 1, "utilization": "high"},
            "utilization: expected float, got 'high'",
        ),
        ("gpu", {"node": "eu-acme-1", "gpu": 1, "temperature": 90}, "temperature is not a known field"),
        ("gpu", {"gpu": 1}, "node and gpu are required"),
        (
            "serving",
            {"namespace": "acme-prod", "pod": "nope", "running": 1},
            "no model server in pod acme-prod/nope",
        ),
        (
            "serving",
            {"namespace": "acme-prod", "pod": "chat-7d9c8b6f5-x2k4q", "waiting": -1},
            "waiting: -1 must be >= 0",
        ),
    ],
)
def test_bad_control_requests_are_refused_naming_the_field(
    simulator: tuple[str, Path], path: str, body: dict[str, Any], error: str
) -> None:
    url, _ = simulator
    answer = httpx.post(f"{url}/control/{path}", json=body)
    assert answer.status_code == 400
    assert error in answer.json()["error"]


def test_reload_takes_a_changed_scenario_and_refuses_a_broken_one(simulator: tuple[str, Path]) -> None:
    url, scenario = simulator
    document = yaml.safe_load(scenario.read_text())
    document["scenario"]["nodes"][0]["allocations"][1]["utilization"] = 66
    scenario.write_text(yaml.safe_dump(document))
    assert httpx.post(f"{url}/control/reload").status_code == 200
    assert _gpu(_families(url), "DCGM_FI_DEV_GPU_UTIL", "eu-acme-1", "3").value == 66

    document["scenario"]["nodes"][0]["gpus"] = "eight"
    scenario.write_text(yaml.safe_dump(document))
    answer = httpx.post(f"{url}/control/reload")
    assert answer.status_code == 400
    assert any("scenario.nodes[0].gpus" in p for p in answer.json()["problems"])
    assert _gpu(_families(url), "DCGM_FI_DEV_GPU_UTIL", "eu-acme-1", "3").value == 66  # the old one stays


def test_the_module_runs_and_refuses_a_bad_scenario_or_a_public_address(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "pdp.telemetry.simulator"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenario: {nodes: []}\n")
    out = subprocess.run(
        [*command, "--scenario", str(bad)], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 2 and "scenario.nodes" in out.stderr
    out = subprocess.run(
        [*command, "--scenario", str(WASTE_SCENARIO), "--listen", "0.0.0.0:9400"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 2 and "--listen 0.0.0.0:9400 is not loopback" in out.stderr

    port = free_port()
    process = subprocess.Popen(
        [*command, "--scenario", str(WASTE_SCENARIO), "--listen", f"127.0.0.1:{port}"], env=env
    )
    try:

        def serving() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("the simulator to serve", serving)
        assert "DCGM_FI_DEV_GPU_UTIL{" in httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0

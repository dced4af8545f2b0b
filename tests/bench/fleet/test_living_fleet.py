"""The shipped slice of the Alibaba trace (405 nodes, 1,019 tasks) replayed through the real control
plane with KWOK keeping the nodes alive: with the PDP in the path every promise holds (the
entitlement of each GPU class, residency, dedicated pools, unshared tenants, spot's tier,
enterprise preemption), spot tasks go through Kueue with the PDP's admission check, and a failed
node's pods are evicted and find a place again within them;
the scheduler alone, same cluster and workload, breaks residency (so the checks can fail)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from bench.fleet.__main__ import main
from bench.fleet.mapping import load_mapping, plan
from bench.fleet.niceness import PDP_NICE, SIMULATOR_NICE
from bench.fleet.promises import CHECKS
from bench.fleet.trace import read_nodes, read_tasks

SLICE = Path(__file__).resolve().parents[3] / "bench" / "fleet" / "slice"


@pytest.mark.timeout(600)
def test_the_trace_slice_keeps_every_promise_with_the_pdp_and_not_without(tmp_path: Path) -> None:
    out = tmp_path / "report.md"
    status = main(
        [
            "--nodes", str(SLICE / "nodes-every-3rd.csv"),
            "--tasks", str(SLICE / "tasks-every-8th.csv"),
            "--seconds", "30",
            "--fail-nodes", "2",
            "--out", str(out),
            "--work", str(tmp_path / "work"),
        ]
    )  # fmt: skip
    report = out.read_text()
    figures = json.loads(out.with_suffix(".json").read_text())
    assert figures["violations"]["pdp"] == dict.fromkeys(CHECKS, 0), report
    assert status == 0
    assert figures["violations"]["plain"]["residency broken"] > 0, report
    assert figures["pdp"]["placed"] > 300, report
    assert figures["pdp"]["evicted"] > 0, report
    assert figures["pdp"]["replaced_placed"] == figures["pdp"]["evicted"], report
    # Spot tasks holding whole GPUs went through Kueue, admitted once the PDP's check said Ready.
    assert "spot tasks submitted as Jobs" in report, report
    # Beside the run's logs: every pod's times and the PDP's metrics the quantiles came from.
    pods = json.loads((tmp_path / "work" / "pdp" / "pods.json").read_text())
    assert sum(1 for view in pods.values() if view["bound"] is not None) == figures["pdp"]["placed"]
    metrics = (tmp_path / "work" / "pdp" / "pdp-metrics.prom").read_text()
    assert "gpupaas_pdp_webhook_request_duration_seconds_bucket" in metrics
    apiserver = (tmp_path / "work" / "pdp" / "apiserver-metrics.prom").read_text()
    assert 'apiserver_admission_webhook_admission_duration_seconds_count{name="gpu.workloads' in apiserver
    # The PDP ran ahead of the cluster where the machine allows it, KWOK behind it (the table says).
    pdp_nice = PDP_NICE if os.geteuid() == 0 else os.nice(0)
    assert re.search(rf"^\| with the PDP \| pdp \| [0-9.]+ \| [0-9]+ \| {pdp_nice} \|$", report, re.M), report
    assert re.search(rf"^\| with the PDP \| kwok \| .* \| {os.nice(0) + SIMULATOR_NICE} \|$", report, re.M)
    # The timelines beside the report, linked from it.
    assert "![report-timelines](report-timelines.png)" in report
    assert out.with_name("report-timelines.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_slice_is_what_its_readme_says() -> None:
    nodes = read_nodes(SLICE / "nodes-every-3rd.csv")
    tasks = read_tasks(SLICE / "tasks-every-8th.csv")
    assert len(nodes) == 405 and all(n.number % 3 == 0 for n in nodes)
    assert len(tasks) == 1019 and all(t.number % 8 == 0 for t in tasks)
    kinds = {p.kind for p in plan(nodes, tasks, load_mapping()).nodes}
    assert kinds == {"dedicated", "time-slicing", "whole"}

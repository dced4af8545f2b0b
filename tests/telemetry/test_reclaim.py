"""The reclaim of idle GPUs end to end: the telemetry simulator scraped by a real Prometheus, a real
lifecycle worker (real OPA deciding the reclaim intent, DBOS, the dry-run adapter's recorded
effects) started with --prometheus, and `POST /v1/reclaim` starting one workflow per idle deployment:
notify, durable grace, re-check in Prometheus, scale, audit."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest

from tests.lifecycle.harness import (
    Worker,
    audit_records,
    deploy,
    examples_with,
    h100_deployment,
    onboard,
    tenant_doc,
)
from tests.ports import free_port
from tests.telemetry.conftest import Telemetry

# Grace of the spot tier in the worker's fleet (the policy's default is 300 s): long enough for a
# test to put a GPU to work within it on a loaded machine, short enough to wait for.
SPOT_GRACE = 6

SPOTR = tenant_doc("initech-spot", "spotr", ["spotr-batch"], entitlements={"H100-80GB": 8})
SPOTK = tenant_doc("initech-spot", "spotk", ["spotk-batch"], entitlements={"H100-80GB": 8})
SPOTQ = tenant_doc("initech-spot", "spotq", ["spotq-batch"], entitlements={"H100-80GB": 8})
ENTR = tenant_doc("globex", "entr", ["entr-ml"], tier="enterprise")

# The cluster the simulator serves: every pod of these deployments idle (nothing loaded).
PODS = [
    ("spotr-batch", "batch-5f6d7c8b9-qw8rt", [0, 1]),
    ("spotr-batch", "work-6c7d8f9b5-zt4kp", [2, 3]),
    ("entr-ml", "eval-7d9c8b6f5-x2k4q", [4, 5]),
    ("spotk-batch", "etl-8b9c7d6f5-m2n4p", [6, 7]),
]
# A second node, for the deployment whose re-check meets no Prometheus.
PODS_2 = [("spotq-batch", "sweep-9c8b7d6f5-w2x4z", [0, 1])]


def _scenario() -> dict[str, Any]:
    allocations = [
        {"gpus": gpus, "namespace": ns, "pod": pod, "utilization": 0, "memory_used_mib": 0}
        for ns, pod, gpus in PODS
    ]
    node = {"name": "rk-1", "model": "NVIDIA H100 80GB HBM3", "gpus": 8, "allocations": allocations}
    second = [
        {"gpus": gpus, "namespace": ns, "pod": pod, "utilization": 0, "memory_used_mib": 0}
        for ns, pod, gpus in PODS_2
    ]
    node_2 = {"name": "rk-2", "model": "NVIDIA H100 80GB HBM3", "gpus": 8, "allocations": second}
    return {"scenario": {"name": "reclaim", "nodes": [node, node_2]}}


@pytest.fixture(scope="module")
def cluster(telemetry: Telemetry) -> Telemetry:
    def seen_idle() -> bool:
        got = telemetry.client.query('count_over_time(DCGM_FI_DEV_GPU_UTIL{namespace="spotk-batch"}[10s])')
        return bool(got) and min(s.value for s in got) >= 4

    return telemetry.play(_scenario(), "Prometheus to scrape the reclaim scenario a few times", seen_idle)


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, cluster: Telemetry) -> Iterator[Worker]:
    root = examples_with(
        tmp_path_factory.mktemp("reclaim-worker"), reclaim={"spot": {"grace_seconds": SPOT_GRACE}}
    )
    w = Worker(root, prometheus=cluster.prometheus_url).start()
    try:
        for doc in (SPOTR, SPOTK, SPOTQ, ENTR):
            onboard(w, doc)
        for tenant, name in (
            ("spotr", "batch"),
            ("spotr", "work"),
            ("entr", "eval"),
            ("spotk", "etl"),
            ("spotq", "sweep"),
        ):
            deploy(w, tenant, h100_deployment(name, 2))
        yield w
    finally:
        w.stop()


def _reclaim(worker: Worker, tenant: str) -> dict[str, Any]:
    with worker.client() as c:
        r = c.post("/v1/reclaim", json={"window": "3s", "step": "1s", "tenant": tenant})
    assert r.status_code == 202, r.text
    body: dict[str, Any] = r.json()
    return body


def _started(body: dict[str, Any]) -> dict[str, str]:
    return {s["deployment"]: s["workflow_id"] for s in body["started"]}


def _audit(worker: Worker, tenant: str) -> list[dict[str, Any]]:
    with worker.client() as c:
        return audit_records(c.get("/v1/audit", params={"tenant": tenant}).text)


def _replicas(worker: Worker, tenant: str) -> dict[str, int]:
    with worker.client() as c:
        return {
            d["name"]: int(d["spec"]["replicas"]) for d in c.get(f"/v1/tenants/{tenant}/deployments").json()
        }


def _events(records: list[dict[str, Any]], deployment: str) -> list[str]:
    return [
        r["event"]
        for r in records
        if r["event"].startswith("reclaim.") and r["detail"].get("deployment") == deployment
    ]


def test_spot_idle_deployment_is_reclaimed_after_its_grace_and_a_gpu_put_to_work_is_not(
    worker: Worker, cluster: Telemetry
) -> None:
    # Two reports at once: each deployment gets one reclaim (the second report skips it, or
    # starts the same workflow id, which DBOS runs once).
    with ThreadPoolExecutor(2) as pool:
        bodies = list(pool.map(lambda _: _reclaim(worker, "spotr"), range(2)))
    ids: dict[str, set[str]] = {}
    for body in bodies:
        for deployment, workflow_id in _started(body).items():
            ids.setdefault(deployment, set()).add(workflow_id)
    assert {d: len(i) for d, i in ids.items()} == {"batch": 1, "work": 1}, bodies
    started = {d: i.pop() for d, i in ids.items()}
    # The work deployment is put back to work within its grace: one of its GPUs gets busy.
    assert cluster.control("gpu", {"node": "rk-1", "gpu": 2, "utilization": 80}).status_code == 200
    # A report while the reclaims wait starts none again.
    again = _reclaim(worker, "spotr")
    assert again["started"] == [] and {s["deployment"] for s in again["skipped"]} == {"batch", "work"}, again

    reclaimed = worker.wait_workflow(started["batch"], timeout=120)
    assert reclaimed["status"] == "SUCCESS", reclaimed
    out = reclaimed["output"]
    assert out["status"] == "reclaimed" and out["from_replicas"] == 2 and out["target_replicas"] == 0, out
    kept = worker.wait_workflow(started["work"], timeout=120)["output"]
    assert kept["status"] == "cancelled" and "put to work during the grace" in kept["reason"], kept
    assert _replicas(worker, "spotr") == {"batch": 0, "work": 2}

    records = _audit(worker, "spotr")
    assert _events(records, "batch") == ["reclaim.notified", "reclaim.applied"]
    assert _events(records, "work") == ["reclaim.notified", "reclaim.cancelled"]
    notified, applied = (r for r in records if r["event"] in ("reclaim.notified", "reclaim.applied")
                         and r["detail"]["deployment"] == "batch")  # fmt: skip
    assert notified["detail"]["action"] == "reclaim" and notified["detail"]["grace_seconds"] == SPOT_GRACE
    assert notified["detail"]["codes"] == ["RECLAIM_SPOT"]
    assert "after a grace of 6 s" in notified["detail"]["notice"][0]
    waited = datetime.fromisoformat(applied["at"]) - datetime.fromisoformat(notified["at"])
    assert waited.total_seconds() >= SPOT_GRACE
    # The reclaim's own decision and the scale it made are both in the trail, linked to the workflow.
    decisions = [
        r["detail"]["kind"]
        for r in records
        if r["event"] == "decision" and r["workflow_id"] == started["batch"]
    ]
    assert decisions == ["reclaim", "scale"]


def test_enterprise_deployment_is_only_notified(worker: Worker) -> None:
    started = _started(_reclaim(worker, "entr"))
    assert set(started) == {"eval"}
    wf = worker.wait_workflow(started["eval"], timeout=60)
    out = wf["output"]
    assert (
        out["status"] == "notified" and out["action"] == "notify" and out["codes"] == ["RECLAIM_NOTIFY_ONLY"]
    ), out
    assert "notified only, no GPU is taken" in out["notice"][0]
    assert _replicas(worker, "entr") == {"eval": 2}
    assert _events(_audit(worker, "entr"), "eval") == ["reclaim.notified"]


def test_reclaim_killed_after_its_grace_resumes_and_scales_once(worker: Worker) -> None:
    worker.kill9()
    worker.start(env={"PDP_LIFECYCLE_PAUSE_AT": "reclaim:recheck"})
    try:
        started = _started(_reclaim(worker, "spotk"))
        assert set(started) == {"etl"}
        assert worker.wait_paused(timeout=120) == "reclaim:recheck"
    finally:
        worker.kill9()
        worker.start()
    out = worker.wait_workflow(started["etl"], timeout=120)["output"]
    assert out["status"] == "reclaimed" and out["target_replicas"] == 0, out
    assert _replicas(worker, "spotk") == {"etl": 0}
    records = _audit(worker, "spotk")
    assert _events(records, "etl") == ["reclaim.notified", "reclaim.applied"]
    scales = [r for r in records if r["event"] == "request.completed" and r["detail"]["kind"] == "scale"]
    assert len(scales) == 1, scales


def test_a_recheck_without_prometheus_cancels_and_takes_nothing(worker: Worker) -> None:
    worker.kill9()
    worker.start(env={"PDP_LIFECYCLE_PAUSE_AT": "reclaim:recheck"})
    prometheus = worker.opts["prometheus"]
    try:
        started = _started(_reclaim(worker, "spotq"))
        assert set(started) == {"sweep"}
        assert worker.wait_paused(timeout=120) == "reclaim:recheck"
        worker.kill9()
        # The worker comes back reading a Prometheus that does not answer: the grace is over, but
        # idleness cannot be confirmed, so nothing is taken.
        worker.opts["prometheus"] = f"http://127.0.0.1:{free_port()}"
        worker.start()
        out = worker.wait_workflow(started["sweep"], timeout=120)["output"]
    finally:
        worker.kill9()
        worker.opts["prometheus"] = prometheus
        worker.start()
    assert out["status"] == "cancelled" and "is unreachable" in out["reason"], out
    assert _replicas(worker, "spotq") == {"sweep": 2}
    assert _events(_audit(worker, "spotq"), "sweep") == ["reclaim.notified", "reclaim.cancelled"]


def test_reclaim_needs_an_admin_and_a_valid_window(worker: Worker) -> None:
    with worker.client() as c:
        bad = c.post("/v1/reclaim", json={"window": "soon"})
        assert bad.status_code == 422 and "window 'soon'" in bad.text, bad.text
    token = onboard(worker, tenant_doc("initech-spot", "spotz", ["spotz-batch"]))
    with worker.client(token) as c:
        assert c.post("/v1/reclaim", json={}).status_code == 403

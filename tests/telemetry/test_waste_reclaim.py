"""`pdp waste --reclaim` end to end: the telemetry simulator scraped by a real Prometheus, a real
lifecycle worker started with --prometheus (real OPA deciding the reclaim intent, DBOS, the dry-run
adapter). A dry run lists the reclaims and starts none; --confirm starts one reclaim workflow per
idle deployment through the lifecycle API; a busy deployment is never reclaimed; no token or a
worker that is not there is exit status 1, never "nothing to reclaim"."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pdp.cli import main
from tests.lifecycle.harness import (
    EXAMPLES,
    Worker,
    audit_records,
    deploy,
    examples_with,
    h100_deployment,
    onboard,
    tenant_doc,
)
from tests.ports import free_port
from tests.telemetry.conftest import Telemetry, wait_for

WSPOT = tenant_doc("initech-spot", "wspot", ["wspot-batch"], entitlements={"H100-80GB": 8})
WBUSY = tenant_doc("initech-spot", "wbusy", ["wbusy-batch"], entitlements={"H100-80GB": 8})
PODS = [
    # (namespace, pod, GPUs, utilization %, memory MiB)
    ("wspot-batch", "crunch-5f6d7c8b9-qw8rt", [0, 1], 0, 0),
    ("wbusy-batch", "serve-6c7d8f9b5-zt4kp", [2, 3], 93, 40000),
]


@pytest.fixture(scope="module")
def cluster(telemetry: Telemetry) -> Telemetry:
    allocations = [
        {"gpus": gpus, "namespace": ns, "pod": pod, "utilization": util, "memory_used_mib": mem}
        for ns, pod, gpus, util, mem in PODS
    ]
    node = {"name": "wr-1", "model": "NVIDIA H100 80GB HBM3", "gpus": 8, "allocations": allocations}

    def seen() -> bool:
        got = telemetry.client.query('count_over_time(DCGM_FI_DEV_GPU_UTIL{namespace="wspot-batch"}[10s])')
        return bool(got) and min(s.value for s in got) >= 4

    scenario = {"scenario": {"name": "waste-reclaim", "nodes": [node]}}
    return telemetry.play(scenario, "Prometheus to scrape the scenario a few times", seen)


@pytest.fixture(scope="module")
def tenants_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tenant documents `pdp waste` attributes namespaces by."""
    folder = tmp_path_factory.mktemp("waste-tenants")
    for doc in (WSPOT, WBUSY):
        (folder / f"{doc['tenant']['name']}.yaml").write_text(yaml.safe_dump(doc))
    return folder


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, cluster: Telemetry) -> Iterator[Worker]:
    # A grace long enough that the reclaims started are still waiting when the test looks.
    root = examples_with(
        tmp_path_factory.mktemp("waste-reclaim-worker"), reclaim={"spot": {"grace_seconds": 600}}
    )
    w = Worker(root, prometheus=cluster.prometheus_url).start()
    try:
        for doc in (WSPOT, WBUSY):
            onboard(w, doc)
        for tenant, name in (("wspot", "crunch"), ("wbusy", "serve")):
            deploy(w, tenant, h100_deployment(name, 2))
        yield w
    finally:
        w.stop()


def pdp_waste(cluster: Telemetry, tenants: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    base = ["waste", "--prometheus", cluster.prometheus_url, "--tenants", str(tenants)]
    base += ["--fleet", str(EXAMPLES / "fleet.yaml"), "--window", "3s", "--step", "1s"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([*base, *args])
    return status, out.getvalue(), err.getvalue()


def _reclaims(worker: Worker, tenant: str) -> list[dict[str, Any]]:
    with worker.client() as c:
        trail = audit_records(c.get("/v1/audit", params={"tenant": tenant}).text)
    return [r for r in trail if r["event"].startswith("reclaim.")]


def test_dry_run_lists_the_reclaims_and_starts_none(
    worker: Worker, cluster: Telemetry, tenants_dir: Path
) -> None:
    status, out, err = pdp_waste(
        cluster,
        tenants_dir,
        "--reclaim",
        "--format",
        "json",
        "--url",
        worker.url,
        "--token",
        worker.admin_token,
    )
    assert status == 0, err
    reclaim = json.loads(out)["reclaim"]
    assert reclaim["dry_run"] is True and reclaim["started"] == []
    assert reclaim["findings"] == [
        {"tenant": "wspot", "namespace": "wspot-batch", "deployment": "crunch", "idle_gpus": 2}
    ]
    status, out, _ = pdp_waste(cluster, tenants_dir, "--reclaim")
    assert status == 0 and "would start: wspot/crunch (2 idle GPUs)" in out and "--confirm" in out
    assert _reclaims(worker, "wspot") == []


def test_confirm_starts_one_reclaim_per_idle_deployment_through_the_api(
    worker: Worker, cluster: Telemetry, tenants_dir: Path
) -> None:
    status, out, err = pdp_waste(
        cluster, tenants_dir, "--reclaim", "--confirm", "--format", "json",
        "--url", worker.url, "--token", worker.admin_token,
    )  # fmt: skip
    assert status == 0, err
    reclaim = json.loads(out)["reclaim"]
    [started] = reclaim["started"]
    assert (started["tenant"], started["deployment"], started["idle_gpus"]) == ("wspot", "crunch", 2)
    # The workflow decided the reclaim intent and told the tenant; the busy deployment has none.
    wait_for(
        "the reclaim's notice",
        lambda: any(r["event"] == "reclaim.notified" for r in _reclaims(worker, "wspot")),
    )
    [notice] = [r for r in _reclaims(worker, "wspot") if r["event"] == "reclaim.notified"]
    assert notice["workflow_id"] == started["workflow_id"]
    assert _reclaims(worker, "wbusy") == []
    # Again while it waits out its grace: the worker skips it, nothing starts twice.
    status, out, err = pdp_waste(
        cluster, tenants_dir, "--reclaim", "--confirm", "--url", worker.url, "--token", worker.admin_token
    )
    assert status == 0, err
    assert "skipped: wspot/crunch" in out and "still running" in out and "started:" not in out


def test_refusals_are_errors_not_an_empty_reclaim(
    worker: Worker, cluster: Telemetry, tenants_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PDP_LIFECYCLE_TOKEN", raising=False)
    status, _, err = pdp_waste(cluster, tenants_dir, "--reclaim", "--confirm", "--url", worker.url)
    assert status == 1 and "no token" in err
    with worker.client() as c:
        token = c.post("/v1/tenants", json=tenant_doc("initech-spot", "wother", ["wother-x"])).json()[
            "tenant_token"
        ]
    status, _, err = pdp_waste(
        cluster, tenants_dir, "--reclaim", "--confirm", "--url", worker.url, "--token", token
    )
    assert status == 1 and "403" in err, err
    gone = f"http://127.0.0.1:{free_port()}"
    status, _, err = pdp_waste(cluster, tenants_dir, "--reclaim", "--confirm", "--url", gone, "--token", "x")
    assert status == 1 and "cannot be reached" in err, err
    status, _, err = pdp_waste(cluster, tenants_dir, "--confirm")
    assert status == 2 and "--reclaim" in err

"""The incidents page's timeline with a real incident: the telemetry simulator reports XID 79 on three
GPUs of a node (scraped by a real Prometheus), the detector opens the incident on a lifecycle worker
that manages a real kube-apiserver, the workflow cordons the node and re-places the three tenants'
deployments by tier, and an operator resolves it. Then, in Chromium, the admin's incidents page and
the affected tenant's show the node's timeline — the fault, the cordon, the re-placements (highest
tier first) and the resolution, in order, at the times of the audit records — axe-clean, and a
tenant the incident did not concern sees none of it. With PDP_CONSOLE_SCREENSHOTS, the two pages'
screenshots in docs/console/.

The same worker, reading that Prometheus, then starts a reclaim of an idle spot deployment on
another node (its grace is 300 s): the waste pages show it in flight, with its GPUs and pool."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from pdp.commands.lifecycle.incidents import detect_once
from pdp.telemetry.xid import node_faults
from tests.artifacts import cached_artifact
from tests.e2e.controlplane import ControlPlane
from tests.lifecycle.conftest import kube
from tests.lifecycle.harness import (
    Worker,
    audit_records,
    create_gpu_node,
    deploy,
    h100_deployment,
    incident_in_state,
    onboard,
    tenant_doc,
)
from tests.product.console.browser import Walk, needs_browser
from tests.product.console.web import Session
from tests.telemetry.conftest import Telemetry, running_telemetry, wait_for

__all__ = ["kube"]  # the real kube-apiserver fixture of tests/lifecycle

NODE = "eu-shared-1"  # a node of the example fleet's eu-h100-shared pool
H100 = "H100-80GB"
TENANTS = {
    "acmet": tenant_doc("acme-eu", "acmet", ["acmet-prod"], isolation="shared", entitlements={H100: 32}),
    "globext": tenant_doc("globex", "globext", ["globext-ml"], entitlements={H100: 32}),
    "initecht": tenant_doc("initech-spot", "initecht", ["initecht-batch"], entitlements={H100: 32}),
    "umbrellat": tenant_doc("globex", "umbrellat", ["umbrellat-ml"], entitlements={H100: 32}),
}
# (tenant, deployment, replicas): one of each tier; umbrellat runs nothing on the node. sweep, on
# another node, idles: the reclaim's.
DEPLOYMENTS = [
    ("initecht", "batch", 2),
    ("acmet", "chat", 2),
    ("globext", "train", 1),
    ("initecht", "sweep", 1),
]
TIERS = {"acmet": "enterprise", "globext": "standard", "initecht": "spot"}


def _gpu(gpus: list[int], namespace: str, pod: str, busy: bool = True) -> dict[str, Any]:
    return {"gpus": gpus, "namespace": namespace, "pod": pod, "container": "main",
            "utilization": 80 if busy else 0, "memory_used_mib": 30000 if busy else 0}  # fmt: skip


# The node as dcgm-exporter would show it: the pods of the three deployments on its GPUs.
SCENARIO: dict[str, object] = {
    "scenario": {
        "name": "console-incident",
        "nodes": [{
            "name": NODE, "model": "NVIDIA H100 80GB HBM3", "gpus": 8, "memory_mib": 81559,
            "allocations": [
                _gpu([0], "acmet-prod", "chat-7d9c8b6f5-x2k4q"),
                _gpu([1], "acmet-prod", "chat-7d9c8b6f5-b9z2m"),
                _gpu([2], "globext-ml", "train-5f6d7c8b9-qw8rt"),
                _gpu([3], "initecht-batch", "batch-6c7d8f9b5-zt4kp"),
            ],
        }, {
            "name": "eu-shared-2", "model": "NVIDIA H100 80GB HBM3", "gpus": 8, "memory_mib": 81559,
            "allocations": [_gpu([0], "initecht-batch", "sweep-7f9c6d8b5-k2v7p", busy=False)],
        }],
    }
}  # fmt: skip
FAULTY_GPUS = (0, 2, 3)  # one GPU of each tenant's


@dataclass
class Incident:
    worker: Worker
    tokens: dict[str, str]
    incident: str
    records: list[dict[str, Any]]  # the incident's audit records, as GET /v1/audit has them
    reclaim: str  # the workflow of the reclaim in flight


@pytest.fixture(scope="module")
def prometheus_binary() -> Path:
    return cached_artifact("build-prometheus")


@pytest.fixture(scope="module")
def resolved(
    kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory, prometheus_binary: Path
) -> Iterator[Incident]:
    """An incident run end to end: XIDs in the telemetry -> the detector -> the incident workflow
    (cordon, re-placements, notices) -> resolved by the admin -> the node released."""
    create_gpu_node(kube.kubeconfig, NODE, "eu-h100-shared", "eu-west-1")
    with running_telemetry(tmp_path_factory.mktemp("telemetry"), prometheus_binary) as telemetry:
        telemetry.play(SCENARIO, f"{NODE}'s GPUs scraped", lambda: _scraped(telemetry))
        worker = Worker(
            tmp_path_factory.mktemp("incident"),
            kubeconfig=kube.kubeconfig,
            capacity_retry_schedule="",
            prometheus=telemetry.prometheus_url,
        )
        worker.start(timeout=180)
        try:
            tokens = {name: onboard(worker, doc) for name, doc in TENANTS.items()}
            for tenant, name, replicas in DEPLOYMENTS:
                deploy(worker, tenant, h100_deployment(name, replicas))
            for gpu in FAULTY_GPUS:
                answer = telemetry.control("gpu", {"node": NODE, "gpu": gpu, "xid": 79})
                assert answer.status_code == 200, answer.text
            wait_for(
                "the three XIDs in Prometheus",
                lambda: [(f.node, len(f.gpus)) for f in node_faults(telemetry.client)] == [(NODE, 3)],
            )
            out = io.StringIO()
            with worker.client() as c:
                assert detect_once(c, telemetry.prometheus_url, None, out=out) == 0, out.getvalue()
            assert out.getvalue().startswith(f"{NODE}: xid 79: opened incident-{NODE}-"), out.getvalue()
            incident = out.getvalue().split("opened ", 1)[1].split()[0]
            incident_in_state(worker, incident, "awaiting_resolution", timeout=300)
            with worker.client() as c:
                answer = c.post(
                    f"/v1/incidents/{incident}/resolve", json={"comment": "GPUs 0, 2, 3 reseated"}
                )
            assert answer.status_code == 202, answer.text
            done = worker.wait_workflow(incident, timeout=180)
            assert done["status"] == "SUCCESS" and done["output"]["state"] == "resolved", done
            with worker.client() as c:
                trail = audit_records(c.get("/v1/audit").text)
            # With the tenant's consent its entitlement protects none of sweep's replicas: a reclaim.
            with worker.client() as c:
                body = {"window": "3s", "step": "1s", "tenant": "initecht", "consent": True}
                answer = c.post("/v1/reclaim", json=body)
            assert answer.status_code == 202, answer.text
            started = answer.json()["started"]
            assert [s["deployment"] for s in started] == ["sweep"], answer.text
            reclaim = started[0]["workflow_id"]
            wait_for("the reclaim's notice", lambda: _notified(worker, reclaim))
            records = [r for r in trail if r["workflow_id"] == incident]
            yield Incident(worker, tokens, incident, records, reclaim)
        finally:
            worker.stop()


def _scraped(telemetry: Telemetry) -> bool:
    found = telemetry.client.query(f'DCGM_FI_DEV_GPU_UTIL{{Hostname="{NODE}"}}')
    return {s.labels.get("namespace") for s in found} >= {"acmet-prod", "globext-ml", "initecht-batch"}


def _notified(worker: Worker, reclaim: str) -> bool:
    with worker.client() as c:
        trail = audit_records(c.get("/v1/audit", params={"tenant": "initecht"}).text)
    return any(r["workflow_id"] == reclaim and r["event"] == "reclaim.notified" for r in trail)


def _reclaims(browser: WebDriver) -> list[dict[str, str]]:
    """The rows of the waste page's reclaims table, by column."""
    table = browser.find_element(By.ID, "reclaims")
    heads = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    return [
        dict(zip(heads, (td.text for td in tr.find_elements(By.TAG_NAME, "td")), strict=True))
        for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]


def _at(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["at"])


def _timeline(browser: WebDriver, incident: str) -> list[dict[str, Any]]:
    """The rows of the incident's timeline table as the browser shows them: the step, the time
    (the <time> element's machine-readable value), the cells' text."""
    table = browser.find_element(By.ID, incident)
    heads = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    rows = []
    for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr"):
        cells = tr.find_elements(By.CSS_SELECTOR, "td, th")
        row = dict(zip(heads, (c.text for c in cells), strict=True))
        stamp = tr.find_element(By.TAG_NAME, "time").get_attribute("datetime")
        rows.append({**row, "at": datetime.fromisoformat(str(stamp))})
    return rows


def _replacements(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["Tier"], r["Deployment"]) for r in rows if r["Step"] == "re-placement"]


@needs_browser
@pytest.mark.timeout(1200)
def test_the_incident_timeline_in_a_browser(resolved: Incident, browser: WebDriver) -> None:
    by_event = {r["event"]: r for r in resolved.records if not r["tenant"]}
    notices = {r["tenant"]: r for r in resolved.records if r["event"] == "incident.notified"}
    assert sorted(notices) == ["acmet", "globext", "initecht"]
    walk = Walk(browser, resolved.worker.url)

    # The reclaim first, while its 300 s grace runs: in flight, what it takes and where.
    walk.sign_in("initecht", resolved.tokens["initecht"])
    walk.open("/console/tenants/initecht/waste?window=120")
    [row] = _reclaims(browser)
    assert row["State"] == "in flight" and row["Deployment"].startswith("sweep"), row
    assert resolved.reclaim in row["Deployment"] and "Tenant" not in row
    assert row["GPUs"] == "1 of 1 idle H100-80GB" and row["Pool"] == "eu-h100-shared", row
    assert row["Replicas"] == "1 → 0" and row["Ended"] == "\u2013", row  # not ended
    assert row["Notified"] and row["Grace ends"] > row["Notified"], row
    walk.shot("tenant-reclaims")
    walk.sign_out()

    walk.sign_in("admin", resolved.worker.admin_token)
    walk.open("/console/admin/waste?window=120")
    [row] = _reclaims(browser)
    assert (row["State"], row["Tenant"], row["Pool"]) == ("in flight", "initecht", "eu-h100-shared"), row
    walk.open("/console/admin/incidents")  # axe-core and the labels checked on opening
    assert browser.find_element(By.ID, f"node-{NODE}-title").text == f"Node {NODE}"
    rows = _timeline(browser, resolved.incident)
    steps = [r["Step"] for r in rows]
    assert steps[:2] == ["fault", "cordon"] and steps[-1] == "resolution", steps
    assert rows[0]["What happened"].startswith("XID 79 on GPU 0, 2, 3; pods acmet-prod/chat-"), rows[0]
    assert "reseated" in rows[-1]["What happened"]
    # Re-placed highest tier first: acmet's enterprise chat, globext's standard train, initecht's spot batch.
    assert _replacements(rows) == [("enterprise", "chat"), ("standard", "train"), ("spot", "batch")], rows
    assert [r["Tenant"] for r in rows if r["Step"] == "re-placement"] == ["acmet", "globext", "initecht"]
    # In order, at the times of the audit records (each re-placement at the time its notice gives).
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    assert rows[0]["at"] == _at(by_event["incident.opened"])
    assert rows[1]["at"] == _at(by_event["node.cordoned"])
    assert rows[-1]["at"] == _at(by_event["node.released"])
    for r in rows:
        if r["Step"] == "re-placement":
            (entry,) = [
                e for e in notices[r["Tenant"]]["detail"]["replaced"] if e["deployment"] == r["Deployment"]
            ]
            assert r["at"].timestamp() == pytest.approx(entry["at"], abs=1e-3), (r, entry)
    assert (
        "resolved" in browser.find_element(By.CSS_SELECTOR, f"table[id='{resolved.incident}'] caption").text
    )
    walk.shot("admin-incidents")
    walk.sign_out()

    # The affected enterprise tenant: the node's steps and its own re-placement, nobody else's.
    walk.sign_in("acmet", resolved.tokens["acmet"])
    walk.open("/console/tenants/acmet/incidents")
    rows = _timeline(browser, resolved.incident)
    assert [r["Step"] for r in rows if r["Step"] != "SLA impact"] == [
        "fault",
        "cordon",
        "re-placement",
        "resolution",
    ]
    assert _replacements(rows) == [("enterprise", "chat")]
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows)
    text = walk.text()
    assert "globext" not in text and "initecht" not in text and "reseated" not in text and "pods" not in text
    walk.shot("tenant-incidents")
    walk.sign_out()

    # A tenant the incident did not concern sees none of it, and no other tenant's page.
    walk.sign_in("umbrellat", resolved.tokens["umbrellat"])
    walk.open("/console/tenants/umbrellat/incidents")
    text = walk.text()
    assert (
        "No incident has concerned umbrellat" in text and NODE not in text and resolved.incident not in text
    )
    walk.sign_out()
    s = Session(resolved.worker)
    assert s.login("umbrellat", resolved.tokens["umbrellat"]).status_code == 303
    assert s.get("/console/tenants/acmet/incidents").status_code == 404
    assert s.get("/console/admin/incidents").status_code == 403
    s.close()

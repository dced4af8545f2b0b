"""Cluster drift in the lifecycle worker, on a real kube-apiserver whose pods the real kube-scheduler
binds (the Deployment, ReplicaSet, ResourceQuota and ServiceAccount controllers of a real
kube-controller-manager create them from the lifecycle's objects):

- a node the pods run on is relabelled into another region: the worker's audit (periodic and on
  demand) names the residency-bound pods on it as misplaced, in GET /v1/drift and on /metrics;
  a tenant token sees its own findings only and cannot audit or remediate;
- an admin remediates the spot tenant's finding: notified, grace, re-check, the pod evicted and its
  replacement bound by the scheduler to a node of the allowed region; the worker is killed (-9)
  right after the eviction, before it was recorded, and the restarted worker finishes it with one
  eviction, one notice and one remediation record;
- an unreachable cluster is reported by the audit, the reachable one audited all the same.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import httpx
import pytest
import yaml
from kubernetes import client, config

from pdp.embedded import EmbeddedPDP
from pdp.lifecycle.clusters import Clusters
from pdp.lifecycle.services import drift
from pdp.substrate.kubernetes.adapter import KubernetesAdapter
from tests.conftest import embedded_settings
from tests.e2e.conftest import NODE_STATUS
from tests.e2e.controlplane import ControlPlane, free_port, kube_binaries
from tests.e2e.kueue import install_crds, kueue_folder
from tests.lifecycle.harness import (
    EXAMPLES,
    Worker,
    audit_records,
    create_gpu_node,
    deploy,
    examples_with,
    h100_deployment,
    onboard,
    tenant_doc,
)

H100 = "H100-80GB"
REGION = "topology.kubernetes.io/region"
US_NODES = ("us-shared-1", "us-shared-2", "us-shared-3")
STANDARD_GRACE = 30
CLI = [sys.executable, "-m", "pdp.cli", "lifecycle", "drift"]
# us-only tenants: a pod of theirs on a node relabelled into the EU is misplaced
SPOT = tenant_doc("initech-spot", "spotd", ["spotd-batch"], isolation="shared", entitlements={H100: 16})
OTHER = tenant_doc("globex", "otherd", ["otherd-ml"], data_residency="us-only", entitlements={H100: 16})
ENTERPRISE = tenant_doc(
    "globex", "entd", ["entd-svc"], tier="enterprise", data_residency="us-only", entitlements={H100: 16}
)


class Cluster(ControlPlane):
    """A control plane whose controller manager also turns Deployments into bound pods."""

    CONTROLLER_ROLES: ClassVar[dict[str, str]] = {
        **ControlPlane.CONTROLLER_ROLES,
        "deployment": "system:controller:deployment-controller",
        "replicaset": "system:controller:replicaset-controller",
        "resourcequota": "system:controller:resourcequota-controller",
        "serviceaccount": "system:controller:service-account-controller",
    }
    WORKLOADS = (
        "namespace",
        "garbagecollector",
        "deployment",
        "replicaset",
        "resourcequota",
        "serviceaccount",
    )


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cp = Cluster(kube_binaries(), tmp_path_factory.mktemp("kube"))
    try:
        cp.start()
        api = config.new_client_from_config(str(cp.kubeconfig))
        try:
            install_crds(api, kueue_folder())
            for node in US_NODES:
                create_gpu_node(cp.kubeconfig, node, "us-h100-shared", "us-east-1")
                client.CoreV1Api(api).patch_node_status(node, NODE_STATUS)
        finally:
            api.close()
        cp.start_controller_manager(controllers=Cluster.WORKLOADS)
        cp.start_scheduler(
            {"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration"}
        )
        yield cp
    finally:
        cp.stop()


def _deploy(worker: Worker, tenant: str, name: str) -> None:
    deploy(worker, tenant, h100_deployment(name, 1), timeout=180)


def _pods(kube: Cluster, namespace: str) -> list[client.V1Pod]:
    """The namespace's pods that are not on their way out."""
    api = config.new_client_from_config(str(kube.kubeconfig))
    try:
        pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
        return [p for p in pods if p.metadata.deletion_timestamp is None]
    finally:
        api.close()


def _bound(kube: Cluster, namespace: str, timeout: float = 180, other_than: str = "") -> client.V1Pod:
    """The namespace's one live pod, once the scheduler bound it (to a node other than `other_than`)."""
    deadline = time.monotonic() + timeout
    while True:
        pods = [p for p in _pods(kube, namespace) if p.spec.node_name and p.metadata.uid != other_than]
        if pods:
            assert len(pods) == 1, [(p.metadata.name, p.spec.node_name) for p in pods]
            return pods[0]
        assert time.monotonic() < deadline, (
            f"no pod of {namespace} bound:\n{kube.log_tail('kube-controller-manager')}\n"
            f"{kube.log_tail('kube-scheduler')}"
        )
        time.sleep(0.5)


def _relabel(kube: Cluster, node: str, region: str) -> None:
    api = config.new_client_from_config(str(kube.kubeconfig))
    try:
        client.CoreV1Api(api).patch_node(node, {"metadata": {"labels": {REGION: region}}})
    finally:
        api.close()


def _region(kube: Cluster, node: str) -> str:
    api = config.new_client_from_config(str(kube.kubeconfig))
    try:
        return str(client.CoreV1Api(api).read_node(node).metadata.labels[REGION])
    finally:
        api.close()


@pytest.fixture(scope="module")
def world(kube: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Worker, dict[str, str]]]:
    # Graces the test can wait for (the policy's defaults: 300 s spot, 3600 s standard);
    # standard's long enough to change the cluster during it.
    graces = {"spot": {"grace_seconds": 2}, "standard": {"grace_seconds": STANDARD_GRACE}}
    root = examples_with(tmp_path_factory.mktemp("drift"), drift=graces)
    worker = Worker(root, kubeconfig=kube.kubeconfig, capacity_retry_schedule="", drift_audit_every="10")
    worker.start(timeout=120)
    try:
        tokens = {d["tenant"]["name"]: onboard(worker, d, timeout=180) for d in (SPOT, OTHER, ENTERPRISE)}
        _deploy(worker, "spotd", "batch")
        _deploy(worker, "otherd", "train")
        _deploy(worker, "entd", "serve")
        yield worker, tokens
    finally:
        worker.stop()


def _audit(worker: Worker) -> dict[str, Any]:
    with worker.client() as c:
        r = c.post("/v1/drift/audit")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _of(report: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["namespace"] == namespace]


@pytest.mark.timeout(900)
def test_relabelled_nodes_drift_is_listed_per_tenant_and_remediated_once_across_a_kill(
    kube: Cluster, world: tuple[Worker, dict[str, str]]
) -> None:
    worker, tokens = world
    spot_pod, other_pod = _bound(kube, "spotd-batch"), _bound(kube, "otherd-ml")
    enterprise_node = _bound(kube, "entd-svc").spec.node_name
    report = _audit(worker)
    assert report["clusters"] == [{"cluster": "", "audited": 3, "findings": 0}], report
    assert report["findings"] == [] and report["revision"]

    drifted = {spot_pod.spec.node_name, other_pod.spec.node_name}
    for node in drifted:  # at most two of the three: one stays in the tenants' region
        _relabel(kube, node, "eu-west-1")
    misplaced = 2 + (enterprise_node in drifted)
    report = _audit(worker)
    assert len(report["findings"]) == misplaced, report
    (spot,) = _of(report, "spotd-batch")
    (other,) = _of(report, "otherd-ml")
    assert spot["finding"] == "misplaced" and spot["tenant"] == "spotd" and spot["deployment"] == "batch"
    assert spot["node"] == spot_pod.spec.node_name and spot["uid"] == spot_pod.metadata.uid
    assert "eu-west-1" in spot["reasons"] and other["tenant"] == "otherd"

    # A tenant token: its own findings, nothing of the clusters, no audit, no remediation.
    with worker.client(tokens["otherd"]) as c:
        seen = c.get("/v1/drift").json()
        assert [f["id"] for f in seen["findings"]] == [other["id"]], seen
        assert "clusters" not in seen and "spotd" not in str(seen)
        assert c.post("/v1/drift/audit").status_code == 403
        assert c.post(f"/v1/drift/{spot['id']}/remediate", json={}).status_code == 403
        assert c.post(f"/v1/drift/{other['id']}/remediate", json={"approve": True}).status_code == 403
    with worker.client() as c:
        assert c.post("/v1/drift/0000000000000000/remediate", json={}).status_code == 404
    listed = subprocess.run(
        [*CLI, "list", "--url", worker.url, "--token", tokens["otherd"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert [f["id"] for f in json.loads(listed.stdout)["findings"]] == [other["id"]]
    refused = subprocess.run(
        [*CLI, "audit", "--url", worker.url, "--token", tokens["otherd"]],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1 and "needs an admin token" in refused.stdout

    # The periodic audit exports the same on /metrics.
    deadline, scraped = time.monotonic() + 60, ""
    while time.monotonic() < deadline:
        scraped = httpx.get(f"{worker.url}/metrics", timeout=10).text
        if f'gpupaas_pdp_drift_findings{{finding="misplaced"}} {misplaced}.0' in scraped:
            break
        time.sleep(1)
    assert f'gpupaas_pdp_drift_findings{{finding="misplaced"}} {misplaced}.0' in scraped, scraped[-3000:]
    assert "gpupaas_pdp_drift_unreachable_clusters 0.0" in scraped

    # Remediated by an admin; killed right after the eviction, before it is recorded.
    worker.kill9()
    worker.start(env={"PDP_LIFECYCLE_PAUSE_AT": "drift:evicted"}, timeout=120)
    (spot,) = _of(_audit(worker), "spotd-batch")
    with worker.client() as c:
        r = c.post(f"/v1/drift/{spot['id']}/remediate", json={})
    assert r.status_code == 202, r.text
    wid = r.json()["workflow_id"]
    assert worker.wait_paused(timeout=180) == "drift:evicted"
    worker.kill9()
    worker.start(timeout=120)
    wf = worker.wait_workflow(wid, timeout=240)
    assert wf["status"] == "SUCCESS" and wf["output"]["status"] == "remediated", wf
    assert wf["output"]["action"] == "replace" and wf["output"]["eviction"] in ("evicted", "gone")

    moved = _bound(kube, "spotd-batch", other_than=spot_pod.metadata.uid)
    assert moved.spec.node_name not in drifted and _region(kube, moved.spec.node_name) == "us-east-1"
    assert _of(_audit(worker), "spotd-batch") == []
    with worker.client() as c:
        again = c.post(f"/v1/drift/{spot['id']}/remediate", json={})
    assert again.status_code == 404  # the finding is gone from the audit

    records = [r for r in audit_records(_trail(worker)) if r["workflow_id"] == wid]
    events = Counter(r["event"] for r in records)
    assert events["drift.notified"] == 1 and events["drift.evicted"] == 1 and events["drift.remediated"] == 1
    decisions = [r for r in records if r["event"] == "decision" and r["detail"]["kind"] == "remediate_drift"]
    assert len(decisions) == 1 and decisions[0]["detail"]["outcome"] == "ALLOW"
    notice = next(r for r in records if r["event"] == "drift.notified")
    assert notice["tenant"] == "spotd" and notice["detail"]["codes"] == ["DRIFT_REPLACE"]
    assert notice["detail"]["revision"] and notice["detail"]["action"] == "replace"
    # every record of the remediation names the decision and the revision it acted under
    assert {r["bundle_revision"] for r in records} == {notice["detail"]["revision"]}, records
    # The tenant reads its notice in its own trail; the other tenant does not see it.
    with worker.client(tokens["spotd"]) as c:
        own = [r for r in audit_records(c.get("/v1/audit").text) if r["workflow_id"] == wid]
    assert {r["event"] for r in own} >= {"drift.notified", "drift.remediated"}
    with worker.client(tokens["otherd"]) as c:
        assert wid not in c.get("/v1/audit").text
        assert c.get(f"/v1/workflows/{wid}").status_code == 404

    # The standard tenant's finding clears during the grace (its node relabelled back): the
    # re-check under the revision in force cancels the remediation, nothing is evicted.
    (other,) = _of(_audit(worker), "otherd-ml")
    with worker.client() as c:
        r = c.post(f"/v1/drift/{other['id']}/remediate", json={})
    assert r.status_code == 202, r.text
    wid = r.json()["workflow_id"]
    with worker.client() as c:  # asked again while it runs: the same remediation, not a second
        twice = c.post(f"/v1/drift/{other['id']}/remediate", json={}).json()
    assert twice["workflow_id"] == wid and twice["already_started"], twice
    deadline = time.monotonic() + STANDARD_GRACE / 2
    while not [
        r for r in audit_records(_trail(worker)) if r["workflow_id"] == wid and r["event"] == "drift.notified"
    ]:
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.2)
    for node in drifted:
        _relabel(kube, node, "us-east-1")
    wf = worker.wait_workflow(wid, timeout=STANDARD_GRACE + 120)
    assert wf["output"]["status"] == "cancelled", wf
    assert wf["output"]["reason"] == "the revision in force allows the pod where it runs"
    assert [p.metadata.uid for p in _pods(kube, "otherd-ml")] == [other["uid"]]


def _remediate(worker: Worker, finding: dict[str, Any], approve: bool = False) -> dict[str, Any]:
    with worker.client() as c:
        r = c.post(f"/v1/drift/{finding['id']}/remediate", json={"approve": approve})
    assert r.status_code == 202, r.text
    wf = worker.wait_workflow(r.json()["workflow_id"], timeout=240)
    assert wf["status"] == "SUCCESS", wf
    return wf["output"]  # type: ignore[no-any-return]


@pytest.mark.timeout(900)
def test_unplaceable_drift_is_evicted_scaled_to_zero_or_only_notified_by_tier(
    kube: Cluster, world: tuple[Worker, dict[str, str]]
) -> None:
    """Every node of the tenants' region relabelled away: no placement is left. Spot is evicted,
    the standard deployment scaled to zero, the enterprise one notified only, approved or not."""
    worker, _ = world
    enterprise_pod = _bound(kube, "entd-svc")
    for node in US_NODES:
        _relabel(kube, node, "eu-west-1")
    try:
        report = _audit(worker)
        (spot,), (other,), (enterprise,) = (
            _of(report, ns) for ns in ("spotd-batch", "otherd-ml", "entd-svc")
        )

        out = _remediate(worker, spot)
        assert (out["status"], out.get("action"), out.get("eviction")) == (
            "remediated",
            "evict",
            "evicted",
        ), out
        out = _remediate(worker, other)
        assert (out["status"], out["action"], out["scale"]) == ("remediated", "scale_to_zero", "applied"), out
        api = config.new_client_from_config(str(kube.kubeconfig))
        try:
            assert client.AppsV1Api(api).read_namespaced_deployment("train", "otherd-ml").spec.replicas == 0
        finally:
            api.close()
        out = _remediate(worker, enterprise)
        assert (out["status"], out["codes"]) == ("notified", ["DRIFT_NOTIFY_ONLY"]), out
        where = ["--url", worker.url, "--token", worker.admin_token]
        approved = subprocess.run(
            [*CLI, "remediate", enterprise["id"], "--approve", *where],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert approved.returncode == 0, approved.stdout + approved.stderr
        started = json.loads(approved.stdout)
        assert started["workflow_id"] == f"drift-{enterprise['id']}-2" and not started["already_started"]
        out = worker.wait_workflow(started["workflow_id"], timeout=240)["output"]
        assert (out["status"], out["codes"]) == ("notified", ["DRIFT_APPROVED", "DRIFT_NOTIFY_ONLY"]), out
        assert "no placement the policy allows" in out["notice"][1]
        # The enterprise pod was never touched; the spot pod's replacement has nowhere to go.
        assert [p.metadata.uid for p in _pods(kube, "entd-svc")] == [enterprise_pod.metadata.uid]
        assert [p for p in _pods(kube, "spotd-batch") if p.spec.node_name] == []
        left = _audit(worker)
        assert [f["namespace"] for f in left["findings"]] == ["entd-svc"], left
    finally:
        for node in US_NODES:
            _relabel(kube, node, "us-east-1")


def _trail(worker: Worker) -> str:
    with worker.client() as c:
        return c.get("/v1/audit").text


def _scheduled_gpu_pod(kube: Cluster, namespace: str) -> None:
    """A GPU pod of no lifecycle tenant, bound by the scheduler."""
    api = config.new_client_from_config(str(kube.kubeconfig))
    try:
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        container = client.V1Container(
            name="job", image="registry.example/job:1",
            resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": "1"}),
        )  # fmt: skip
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name="probe"), spec=client.V1PodSpec(containers=[container])
        )
        deadline = time.monotonic() + 120
        while True:  # until the service account controller made the namespace's default account
            try:
                core.create_namespaced_pod(namespace, pod)
                break
            except client.exceptions.ApiException as exc:
                assert exc.status == 403 and time.monotonic() < deadline, exc
                time.sleep(0.5)
    finally:
        api.close()
    _bound(kube, namespace)


def test_an_unreachable_cluster_is_reported_and_the_others_audited(
    kube: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("pdp")
    shutil.copytree(EXAMPLES, root / "examples")
    away = yaml.safe_load(kube.kubeconfig.read_text())
    away["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"  # nothing listens
    (root / "away.kubeconfig").write_text(yaml.safe_dump(away))
    clusters = Clusters(
        {
            "here": KubernetesAdapter(str(kube.kubeconfig)),
            "away": KubernetesAdapter(str(root / "away.kubeconfig")),
        },
        KubernetesAdapter(str(kube.kubeconfig)),
    )
    _scheduled_gpu_pod(kube, "drift-probe")
    with EmbeddedPDP(embedded_settings(root)) as stack:
        auditor = drift.Auditor(clusters, stack.point, lambda: "r1")
        report = auditor.audit().as_json()
    by_name = {c["cluster"]: c for c in report["clusters"]}
    assert set(by_name) == {"here", "away"}
    assert "error" in by_name["away"] and "Connection refused" in by_name["away"]["error"], by_name
    assert by_name["here"]["audited"] >= 1 and "error" not in by_name["here"]


def test_the_audit_interval_is_checked_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    from pdp.cli import parser

    assert parser().parse_args(["lifecycle", "worker", "--drift-audit-every", "60"]).drift_audit_every == 60
    assert parser().parse_args(["lifecycle", "worker"]).drift_audit_every == 0  # off by default
    for bad in ("5", "soon", "-10"):
        with pytest.raises(SystemExit):
            parser().parse_args(["lifecycle", "worker", "--drift-audit-every", bad])
        err = capsys.readouterr().err
        assert "argument --drift-audit-every" in err and bad in err, err


def test_a_tenants_view_masks_the_other_tenants_a_reason_names() -> None:
    """A dedicated tenant's pod on a node shared with another tenant: the isolation reason names the
    other tenant, which the pod's owner must not learn from GET /v1/drift."""
    from pdp.substrate.kubernetes.enforcement.pod_audit import MISPLACED, Finding

    reason = (
        'ISOLATION_NODE_SHARED: node "us-shared-1" hosts pods of tenant "acme-eu" (isolation dedicated) '
        'and tenant "acme" has isolation dedicated; a dedicated tenant shares no node (acme-prod)'
    )
    finding = Finding("acme-ml", "p", "us-shared-1", "acme", MISPLACED, reason, "r1", "u1", "d")
    report = drift.Report("now", "r1", 0.1, [], [drift.Drifted("f1", "", finding)])
    (seen,) = report.as_json("acme", ["acme-eu", "acme-prod", "globex"])["findings"]
    assert seen["reasons"] == (
        'ISOLATION_NODE_SHARED: node "us-shared-1" hosts pods of tenant "(another tenant)" (isolation '
        'dedicated) and tenant "acme" has isolation dedicated; a dedicated tenant shares no node '
        "((another tenant))"
    )
    assert report.as_json("globex", [])["findings"] == []
    assert report.as_json()["findings"][0]["reasons"] == reason  # the admin sees it all


def test_a_dry_run_worker_has_nothing_to_audit(tmp_path_factory: pytest.TempPathFactory) -> None:
    worker = Worker(tmp_path_factory.mktemp("dry"), drift_audit_every="10").start(timeout=120)
    try:
        with worker.client() as c:
            assert c.get("/v1/drift").json() == {"finished_at": None, "revision": "", "findings": []}
            r = c.post("/v1/drift/audit")
            assert r.status_code == 409 and "dry run" in r.text, r.text
            assert c.post("/v1/drift/0123456789abcdef/remediate", json={}).status_code == 404
        assert "the worker applies to no cluster (dry run)" in worker.log()
    finally:
        worker.stop()

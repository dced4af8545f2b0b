"""One lifecycle worker, two real clusters (two etcd + kube-apiserver pairs on loopback, their GPU
nodes labelled as EU and US regions), reached through one kubeconfig with a context each
(`--clusters`): tenants are realized only where their policy allows, each deployment in one
cluster chosen by policy and free capacity, offboarding leaves nothing in either, and an
unreachable cluster pauses a workflow (visibly) until it answers again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from tests.e2e.controlplane import ControlPlane, kube_binaries
from tests.e2e.kueue import install_crds, kueue_folder
from tests.lifecycle.harness import EXAMPLES, FINAL, Worker, audit_records, create_gpu_node, onboard

REGIONS = {"eu-west": "eu-west-1", "us-east": "us-east-1"}
TENANT_LABEL = "gpupaas.io/tenant"


@pytest.fixture(scope="module")
def planes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ControlPlane]]:
    started: dict[str, ControlPlane] = {}
    try:
        for name in REGIONS:
            cp = ControlPlane(kube_binaries(), tmp_path_factory.mktemp(f"kube-{name}")).start()
            started[name] = cp
            api = config.new_client_from_config(str(cp.kubeconfig))
            install_crds(api, kueue_folder())  # the tenant's Kueue objects are validated by each
            api.close()
            cp.start_controller_manager()  # namespace deletion finishes (offboarding waits for it)
            create_gpu_node(cp.kubeconfig, f"{name}-gpu-1", f"{name}-h100", REGIONS[name])
        yield started
    finally:
        for cp in started.values():
            cp.stop()


def _merged_kubeconfig(planes: dict[str, ControlPlane], path: Path) -> None:
    """One kubeconfig holding both clusters, a context each (named after the fleet's clusters)."""
    merged: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "users": [],
        "contexts": [],
    }
    for name, cp in planes.items():
        own = yaml.safe_load(cp.kubeconfig.read_text())
        merged["clusters"].append({"name": name, "cluster": own["clusters"][0]["cluster"]})
        merged["users"].append({"name": f"{name}-admin", "user": own["users"][0]["user"]})
        merged["contexts"].append(
            {"name": f"admin@{name}", "context": {"cluster": name, "user": f"{name}-admin"}}
        )
    merged["current-context"] = "admin@eu-west"
    path.write_text(yaml.safe_dump(merged))


def _fleet() -> dict[str, Any]:
    example = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
    pools = {
        name: {
            "region": region,
            "jurisdiction": name.split("-")[0].upper(),
            "pools": {
                f"{name}-h100": {
                    "gpu_class": "H100-80GB",
                    "isolation": "shared",
                    "nodes": 1,
                    "node_names": [f"{name}-gpu-1"],
                    "gpus_per_node": 8,
                }
            },
        }
        for name, region in REGIONS.items()
    }
    return {"fleet": {"name": "two-clusters", "gpu_classes": example["gpu_classes"], "clusters": pools}}


def _tenant(name: str, residency: str, gpus: int, tier: str = "standard") -> dict[str, Any]:
    return {
        "tenant": {
            "name": name,
            "tier": tier,
            "isolation": "shared",
            "data_residency": residency,
            "allow_preemption": tier == "spot",
            "allow_gpu_sharing": False,
            "namespaces": [f"{name}-ml"],
            "entitlements": {"H100-80GB": gpus},
        }
    }


def _wait(worker: Worker, response: Any, timeout: float = 120) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    out: dict[str, Any] = worker.wait_workflow(response.json()["workflow_id"], timeout=timeout)["output"]
    return out


def _tenant_namespaces(cp: ControlPlane, tenant: str) -> list[str]:
    api = config.new_client_from_config(str(cp.kubeconfig))
    try:
        found = client.CoreV1Api(api).list_namespace(label_selector=f"{TENANT_LABEL}={tenant}")
        return sorted(n.metadata.name for n in found.items)
    finally:
        api.close()


def _deployment(cp: ControlPlane, namespace: str, name: str) -> Any | None:
    api = config.new_client_from_config(str(cp.kubeconfig))
    try:
        return client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    except client.exceptions.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    finally:
        api.close()


def _events(worker: Worker, tenant: str) -> list[dict[str, Any]]:
    with worker.client() as c:
        return audit_records(c.get("/v1/audit", params={"tenant": tenant}).text)


def _restart_apiserver(cp: ControlPlane) -> None:
    """The same kube-apiserver again (same port, certificates and etcd): the cluster is back."""
    argv = [str(a) for a in cp.procs["kube-apiserver"].args]  # type: ignore[union-attr]
    cp._spawn("kube-apiserver", argv)
    cp._wait_ready()


def _worker(planes: dict[str, ControlPlane], tmp_path: Path) -> Worker:
    """A worker reaching both clusters through one kubeconfig, a context each (--clusters)."""
    examples = tmp_path / "examples"
    (examples / "tenants").mkdir(parents=True)
    (examples / "fleet.yaml").write_text(yaml.safe_dump(_fleet()))
    kubeconfig = tmp_path / "fleet.kubeconfig"
    _merged_kubeconfig(planes, kubeconfig)
    access = tmp_path / "clusters.yaml"
    contexts = {name: {"kubeconfig": kubeconfig.name, "context": f"admin@{name}"} for name in REGIONS}
    access.write_text(yaml.safe_dump({"clusters": contexts}))
    return Worker(tmp_path, examples=examples, clusters=str(access), cluster_retry_interval="0.5")


def test_tenants_realized_only_where_their_policy_allows_across_two_clusters(
    planes: dict[str, ControlPlane], tmp_path: Path
) -> None:
    eu, us = planes["eu-west"], planes["us-east"]
    worker = _worker(planes, tmp_path)
    worker.start()
    try:
        with worker.client() as c:
            assert c.get("/v1/clusters").json() == {
                "managed": True,
                "clusters": ["eu-west", "us-east"],
                "paused": [],
            }

        # An EU-only tenant: its namespaces in the EU cluster; the US apiserver never sees them.
        eu_token = onboard(worker, _tenant("euco", "eu-only", 8))
        assert _tenant_namespaces(eu, "euco") == ["euco-ml"]
        assert _tenant_namespaces(us, "euco") == []
        [placed] = [r["detail"] for r in _events(worker, "euco") if r["event"] == "tenant.clusters"]
        assert placed["clusters"] == ["eu-west"] and placed["not_realized_in"] == ["us-east"], placed
        # Pauses name every tenant whose workflow waits: the cluster view is the admin's only.
        with worker.client(eu_token) as c:
            assert c.get("/v1/clusters").status_code == 403

        # Its deployment lands in the EU cluster, annotated with the decision that placed it.
        with worker.client(eu_token) as c:
            llm = {"deployment": "llm", "gpu_class": "H100-80GB", "gpus_per_replica": 2, "replicas": 1}
            out = _wait(worker, c.post("/v1/tenants/euco/deployments", json=llm))
        assert out["status"] == "applied", out
        dep = _deployment(eu, "euco-ml", "llm")
        assert dep is not None and dep.metadata.annotations["gpupaas.io/cluster"] == "eu-west"
        assert dep.metadata.annotations["gpupaas.io/placement-decision"] == out["decision"]["decision_id"]
        assert _deployment(us, "euco-ml", "llm") is None

        # A global tenant: realized in both; its first deployment fills what is left of the EU
        # cluster (first in the policy's order, 6 of 8 GPUs free), the next goes to the US one.
        global_token = onboard(worker, _tenant("globo", "any", 16))
        assert _tenant_namespaces(eu, "globo") == ["globo-ml"] == _tenant_namespaces(us, "globo")
        with worker.client(global_token) as c:
            first = {"deployment": "first", "gpu_class": "H100-80GB", "gpus_per_replica": 6, "replicas": 1}
            assert _wait(worker, c.post("/v1/tenants/globo/deployments", json=first))["status"] == "applied"
            second = {"deployment": "second", "gpu_class": "H100-80GB", "gpus_per_replica": 4, "replicas": 1}
            out = _wait(worker, c.post("/v1/tenants/globo/deployments", json=second))
        assert out["status"] == "applied", out
        assert (
            _deployment(eu, "globo-ml", "first") is not None and _deployment(us, "globo-ml", "first") is None
        )
        moved = _deployment(us, "globo-ml", "second")
        assert moved is not None and moved.metadata.annotations["gpupaas.io/cluster"] == "us-east"
        assert _deployment(eu, "globo-ml", "second") is None
        applied = [r for r in _events(worker, "globo") if r["event"] == "workload.applied"]
        assert {r["detail"]["deployment"]: r["detail"]["cluster"] for r in applied} == {
            "first": "eu-west",
            "second": "us-east",
        }
        assert applied[-1]["decision_id"] == out["decision"]["decision_id"]

        # The US cluster becomes unreachable: a scale of the deployment there pauses, visibly,
        # and completes once the cluster answers again (it is never skipped).
        us.procs["kube-apiserver"].kill()  # as a crash or a network partition would: no goodbye
        us.procs["kube-apiserver"].wait(timeout=60)
        with worker.client(global_token) as c:
            r = c.post("/v1/tenants/globo/deployments/second/scale", json={"target_replicas": 2})
            assert r.status_code == 202, r.text
        workflow = r.json()["workflow_id"]
        deadline = time.monotonic() + 60
        with worker.client() as c:
            while not (paused := c.get("/v1/clusters").json()["paused"]):
                assert time.monotonic() < deadline, worker.log()
                time.sleep(0.2)
            assert c.get(f"/v1/workflows/{workflow}").json()["status"] == "PENDING"
        [pause] = paused
        assert pause["cluster"] == "us-east" and pause["tenant"] == "globo", pause
        assert "unreachable" in pause["reason"], pause
        [unreachable] = [r["detail"] for r in _events(worker, "globo") if r["event"] == "cluster.unreachable"]
        assert unreachable["cluster"] == "us-east" and unreachable["paused"] is True
        # The drift audit reports the unreachable cluster and audits the other all the same.
        with worker.client() as c:
            drifted = c.post("/v1/drift/audit").json()
        by_cluster = {x["cluster"]: x for x in drifted["clusters"]}
        assert "error" in by_cluster["us-east"] and "error" not in by_cluster["eu-west"], drifted
        # The worker itself dies (-9) while paused: restarted, it resumes the scale (DBOS
        # recovery), which pauses again on the same cluster rather than completing without it.
        worker.kill9()
        worker.start()
        deadline = time.monotonic() + 120
        with worker.client() as c:
            while not (paused := c.get("/v1/clusters").json()["paused"]):
                assert time.monotonic() < deadline, worker.log()
                time.sleep(0.2)
            assert c.get(f"/v1/workflows/{workflow}").json()["status"] not in FINAL  # recovered, waiting
        assert [p["cluster"] for p in paused] == ["us-east"], paused
        _restart_apiserver(us)
        wf = worker.wait_workflow(workflow, timeout=120)
        assert wf["status"] == "SUCCESS" and wf["output"]["status"] == "applied", wf
        scaled = _deployment(us, "globo-ml", "second")
        assert scaled is not None and scaled.spec.replicas == 2
        [resumed] = [r["detail"] for r in _events(worker, "globo") if r["event"] == "cluster.reachable"]
        assert resumed["cluster"] == "us-east" and resumed["paused_seconds"] > 0
        with worker.client() as c:
            assert c.get("/v1/clusters").json()["paused"] == []

        # Offboarding destroys in every cluster; the certificate names each cluster's objects.
        workloads = {
            "euco": ["eu-west:Deployment/euco-ml/llm"],
            "globo": ["eu-west:Deployment/globo-ml/first", "us-east:Deployment/globo-ml/second"],
        }
        for tenant, token in (("euco", eu_token), ("globo", global_token)):
            with worker.client(token) as c:
                out = _wait(worker, c.post(f"/v1/tenants/{tenant}/offboard", json={"reason": "done"}), 300)
            assert out["status"] == "offboarded", out
            with worker.client() as c:
                cert = c.get(f"/v1/tenants/{tenant}/certificate").json()["certificate"]
            destroyed = cert["objects_destroyed_and_verified_absent"]
            for cluster in REGIONS:
                assert f"{cluster}:Namespace//{tenant}-ml" in destroyed, destroyed
            assert set(workloads[tenant]) <= set(destroyed), destroyed
        for cp in (eu, us):
            assert _tenant_namespaces(cp, "euco") == [] and _tenant_namespaces(cp, "globo") == []
            for ns, name in (("euco-ml", "llm"), ("globo-ml", "first"), ("globo-ml", "second")):
                assert _deployment(cp, ns, name) is None
    finally:
        worker.stop()


def _deploy(worker: Worker, token: str, tenant: str, name: str, gpus: int) -> dict[str, Any]:
    body = {"deployment": name, "gpu_class": "H100-80GB", "gpus_per_replica": gpus, "replicas": 1}
    with worker.client(token) as c:
        out = _wait(worker, c.post(f"/v1/tenants/{tenant}/deployments", json=body))
    assert out["status"] == "applied", out
    return out


def test_capacity_exhaustion_preempts_spot_work_only_in_the_cluster_the_deployment_goes_to(
    planes: dict[str, ControlPlane], tmp_path: Path
) -> None:
    eu, us = planes["eu-west"], planes["us-east"]
    worker = _worker(planes, tmp_path)
    worker.start()
    try:
        spot = onboard(worker, _tenant("spotco", "any", 16, tier="spot"))
        _deploy(worker, spot, "spotco", "s-eu", 6)  # the EU cluster: 2 GPUs left there
        _deploy(worker, spot, "spotco", "s-us", 4)  # does not fit there: the US cluster
        assert (
            _deployment(eu, "spotco-ml", "s-eu") is not None
            and _deployment(us, "spotco-ml", "s-us") is not None
        )
        onboard(worker, _tenant("usco", "us-only", 8))
        # The scheduler cannot place a US-only deployment: 2 more GPUs are needed. The larger spot
        # deployment (offered first fleet-wide) runs in the EU: it is not a victim; the US one is.
        exhausted = {
            "tenant": "usco",
            "deployment": {
                "deployment": "big",
                "gpu_class": "H100-80GB",
                "gpus_per_replica": 6,
                "replicas": 1,
            },
            "gpus": 2,
        }
        with worker.client() as c:
            out = _wait(worker, c.post("/v1/capacity/exhaustion", json=exhausted))
        assert out["status"] == "placed" and out["cluster"] == "us-east", out
        assert [f"{v['tenant']}/{v['workload']}" for v in out["victims"]] == ["spotco/s-us"], out
        preempted, kept = _deployment(us, "spotco-ml", "s-us"), _deployment(eu, "spotco-ml", "s-eu")
        assert preempted is not None and preempted.spec.replicas == 0
        assert kept is not None and kept.spec.replicas == 1
        big = _deployment(us, "usco-ml", "big")
        assert big is not None and big.metadata.annotations["gpupaas.io/cluster"] == "us-east"
        assert _deployment(eu, "usco-ml", "big") is None and _tenant_namespaces(eu, "usco") == []
        with worker.client(spot) as c:
            states = {d["name"]: d["state"] for d in c.get("/v1/tenants/spotco/deployments").json()}
        assert states == {"s-eu": "running", "s-us": "queued"}
    finally:
        worker.stop()


def test_a_clusters_document_naming_no_fleet_cluster_is_refused_with_the_field(tmp_path: Path) -> None:
    access = tmp_path / "clusters.yaml"
    access.write_text(
        yaml.safe_dump({"clusters": {"eu-west": {"in_cluster": True}, "mars": {"in_cluster": True}}})
    )
    worker = Worker(tmp_path, clusters=str(access))
    with pytest.raises(RuntimeError) as refused:
        worker.start(timeout=60)
    assert f"{access}: clusters.mars: is not a cluster of the fleet" in str(refused.value)
    assert f"{access}: clusters.eu-central: is missing" in str(refused.value)

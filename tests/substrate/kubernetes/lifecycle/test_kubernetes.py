"""The Kubernetes adapter against a real kube-apiserver (tests/e2e/controlplane.py), onboarding
the enterprise EU tenant through the API into it, and offboarding it there: namespace deletion is
finished by a real kube-controller-manager (namespace and garbage collector controllers only)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from pdp.lifecycle.services import certificate
from pdp.lifecycle.storage import anchor
from pdp.substrate import tenant_objects
from pdp.substrate.kubernetes import objects, workload
from pdp.substrate.kubernetes.adapter import FIELD_MANAGER, KubernetesAdapter, ObjectRefused
from tests.e2e.controlplane import ControlPlane
from tests.lifecycle.harness import EXAMPLES, Worker, audit_records, create_gpu_node, onboard, tenant_doc


def test_server_side_apply_is_idempotent(kube: ControlPlane) -> None:
    policy = yaml.safe_load((EXAMPLES / "tenants" / "acme-eu.yaml").read_text())["tenant"]
    fleet = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
    rendered = tenant_objects.render({**policy, "name": "ssa-test", "namespaces": ["ssa-ns"]}, fleet)
    adapter = KubernetesAdapter(str(kube.kubeconfig))
    try:
        everything = [o for g in tenant_objects.GROUPS for o in rendered[g]]
        for obj in everything:
            adapter.apply(obj)
        first = {objects.key(o): adapter.get(o) for o in everything}
        for obj in everything:
            adapter.apply(obj)
        for obj in everything:
            again = adapter.get(obj)
            before = first[objects.key(obj)]
            assert again is not None and before is not None
            assert again["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], objects.key(
                obj
            )
            managers = {m["manager"] for m in again["metadata"]["managedFields"]}
            assert FIELD_MANAGER in managers and again["metadata"]["managedFields"][0]["operation"] == "Apply"
        # A deployment's workload object: applying it again is a no-op on the server too.
        place = workload.placement(
            {"eligible_clusters": ["eu-west"], "priority_class_name": "gpupaas-enterprise"}, fleet, "none"
        )
        spec = {"deployment": "llm", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 1}
        deployment = workload.render("ssa-test", "ssa-ns", spec, place, fleet)
        adapter.apply(deployment)
        once = adapter.get(deployment)
        adapter.apply(deployment)
        twice = adapter.get(deployment)
        assert once is not None and twice is not None
        assert once["metadata"]["resourceVersion"] == twice["metadata"]["resourceVersion"]
        quota = first["ResourceQuota/ssa-ns/gpupaas-gpu-quota"]
        assert quota is not None and quota["spec"]["hard"] == {"requests.nvidia.com/gpu": "4"}
        adapter.delete(rendered["quota"][0])
        assert not adapter.exists(rendered["quota"][0])
    finally:
        adapter.close()


def test_an_object_the_api_server_refuses_is_one_sentence_naming_it(kube: ControlPlane) -> None:
    # A tier's PriorityClass an admin created before with another preemptionPolicy: the field is
    # immutable, so onboarding cannot apply the catalog's. What the failed step reports must say
    # so in one line, not the client's dump of headers and body.
    [spot] = [o for o in objects.tier_catalog() if o["metadata"]["name"] == "gpupaas-spot"]
    theirs = {**spot, "metadata": {"name": "refused-test"}, "preemptionPolicy": "PreemptLowerPriority"}
    adapter = KubernetesAdapter(str(kube.kubeconfig))
    try:
        adapter.apply(theirs)
        with pytest.raises(ObjectRefused) as refused:
            adapter.apply({**theirs, "preemptionPolicy": "Never"})
        said = str(refused.value)
        assert said.startswith("PriorityClass refused-test: the API server refused it: "), said
        assert "preemptionPolicy" in said and "immutable" in said and "\n" not in said, said
        assert refused.value.status == 422
    finally:
        adapter.delete(theirs)
        adapter.close()


def test_the_gpu_limit_range_caps_gpu_containers_and_gives_others_none(kube: ControlPlane) -> None:
    # The API server defaults a LimitRange's `default` (and so `defaultRequest`) to its `max`: a
    # LimitRange with only a GPU max gave every container that names no GPU the tenant's whole
    # entitlement, which the ResourceQuota, the webhook and Kueue (it applies LimitRange defaults
    # to a Workload's pod sets) then counted as GPUs asked for.
    policy = yaml.safe_load((EXAMPLES / "tenants" / "acme-eu.yaml").read_text())["tenant"]
    fleet = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
    rendered = tenant_objects.render({**policy, "name": "lr-test", "namespaces": ["lr-ns"]}, fleet)
    adapter = KubernetesAdapter(str(kube.kubeconfig))
    api = config.new_client_from_config(str(kube.kubeconfig))
    core = client.CoreV1Api(api)
    try:
        for obj in rendered["namespaces"] + rendered["limits"]:
            adapter.apply(obj)

        def pod(name: str, gpus: int | None) -> dict[str, Any]:
            container: dict[str, Any] = {"name": "c", "image": "registry.example/app:1"}
            if gpus is not None:
                container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
            return {"metadata": {"name": name}, "spec": {"containers": [container]}}

        cpu = core.create_namespaced_pod("lr-ns", pod("cpu-only", None)).spec.containers[0].resources
        assert (cpu.limits or {}).get("nvidia.com/gpu", "0") == "0", cpu
        assert (cpu.requests or {}).get("nvidia.com/gpu", "0") == "0", cpu
        gpu = core.create_namespaced_pod("lr-ns", pod("two-gpus", 2)).spec.containers[0].resources
        assert gpu.limits["nvidia.com/gpu"] == "2" and gpu.requests["nvidia.com/gpu"] == "2"
        with pytest.raises(client.exceptions.ApiException) as capped:
            core.create_namespaced_pod("lr-ns", pod("five-gpus", 5))
        assert (
            capped.value.status == 403
            and "maximum nvidia.com/gpu usage per Container is 4" in capped.value.body
        )
    finally:
        adapter.close()
        api.close()


def test_a_borrowing_tenants_quota_admits_the_pods_of_what_it_borrows(kube: ControlPlane) -> None:
    """initech-spot (spot, allows preemption, 16 A100s): Kueue lends it idle quota beyond its
    entitlement and placement lets it hold it, so its namespace's ResourceQuota and LimitRange
    must not refuse the pods (they did: "exceeded quota" for every Job Kueue admitted on borrowed
    quota, the quota held with no pod). The same tenant refusing preemption borrows nothing and is
    capped at its entitlement."""
    policy = yaml.safe_load((EXAMPLES / "tenants" / "initech-spot.yaml").read_text())["tenant"]
    fleet = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
    adapter = KubernetesAdapter(str(kube.kubeconfig))
    api = config.new_client_from_config(str(kube.kubeconfig))
    core = client.CoreV1Api(api)

    def pod(name: str, gpus: int, resource: str = "nvidia.com/gpu") -> dict[str, Any]:
        limits = {resource: str(gpus)}
        container = {"name": "c", "image": "registry.example/app:1", "resources": {"limits": limits}}
        return {"metadata": {"name": name}, "spec": {"containers": [container]}}

    try:
        for name, preemptible in (("borrow-ns", True), ("held-ns", False)):
            tenant = {**policy, "name": name, "namespaces": [name], "allow_preemption": preemptible}
            rendered = tenant_objects.render(tenant, fleet)
            for obj in rendered["namespaces"] + rendered["quota"] + rendered["limits"]:
                adapter.apply(obj)
        deadline = time.monotonic() + 60
        while not core.read_namespaced_resource_quota("gpupaas-gpu-quota", "held-ns").status.hard:
            assert time.monotonic() < deadline, "the resourcequota controller never counted held-ns"
            time.sleep(0.2)
        # 12 + 12 A100s in one namespace: 24 of 16 entitled, the 8 beyond borrowed.
        core.create_namespaced_pod("borrow-ns", pod("first", 12))
        second = core.create_namespaced_pod("borrow-ns", pod("second", 12))
        assert second.spec.containers[0].resources.limits["nvidia.com/gpu"] == "12"
        core.create_namespaced_pod("held-ns", pod("first", 12))
        with pytest.raises(client.exceptions.ApiException) as held:
            core.create_namespaced_pod("held-ns", pod("second", 12))
        assert held.value.status == 403 and "exceeded quota: gpupaas-gpu-quota" in held.value.body
        with pytest.raises(client.exceptions.ApiException) as one_container:
            core.create_namespaced_pod("held-ns", pod("too-big", 17))
        assert "maximum nvidia.com/gpu usage per Container is 16" in one_container.value.body
        # Shares too: 16 A100s are at most 64 replicas (4 per GPU in the most-split pool).
        shared = "nvidia.com/gpu.shared"
        core.create_namespaced_pod("held-ns", pod("shares", 40, shared))
        with pytest.raises(client.exceptions.ApiException) as shares:
            core.create_namespaced_pod("held-ns", pod("more-shares", 40, shared))
        assert shares.value.status == 403 and "exceeded quota: gpupaas-gpu-quota" in shares.value.body
        assert "requested: requests.nvidia.com/gpu.shared=40" in shares.value.body
        core.create_namespaced_pod("borrow-ns", pod("shares", 40, shared))
        core.create_namespaced_pod("borrow-ns", pod("more-shares", 40, shared))
    finally:
        adapter.close()
        api.close()


def test_onboarding_acme_eu_through_the_api_creates_its_objects(kube: ControlPlane, tmp_path: Path) -> None:
    # A free node of the EU shared H100 pool, for the dedicated pool the approval provisions.
    create_gpu_node(kube.kubeconfig, "eu-free-1", "eu-h100-shared", "eu-west-1")
    worker = Worker(tmp_path, kubeconfig=kube.kubeconfig).start()
    try:
        # acme-eu is already in the bundle (409), so the same policy under a fresh name; a
        # dedicated tenant without a dedicated pool needs approval (DEDICATED_POOL_PROVISIONING).
        onboard(worker, tenant_doc("acme-eu", "acme-eu2", ["acme2-prod", "acme2-staging"]), approve=True)
        with worker.client() as c:
            tenant = c.get("/v1/tenants/acme-eu2").json()
        assert tenant["state"] == "active" and tenant["carved_pools"][0]["nodes"] == ["eu-free-1"]
    finally:
        worker.stop()
    api = config.new_client_from_config(str(kube.kubeconfig))
    try:
        core = client.CoreV1Api(api)
        # The carving changed the fleet: the GPU operator's config follows it (the carved pool
        # gets its own device plugin config, named by the carved node's label).
        carved = tenant["carved_pools"][0]["pool"]
        labels = core.read_node("eu-free-1").metadata.labels
        assert labels["gpupaas.io/pool"] == carved
        assert labels["nvidia.com/device-plugin.config"] == carved
        assert labels["nvidia.com/gpu.sharing-strategy"] == "none"
        plugin = core.read_namespaced_config_map("gpupaas-device-plugin-config", "gpu-operator").data
        assert yaml.safe_load(plugin[carved]) == {"version": "v1", "flags": {"migStrategy": "none"}}
        ns = core.read_namespace("acme2-prod")
        assert ns.metadata.labels["gpupaas.io/tenant"] == "acme-eu2"
        quota = core.read_namespaced_resource_quota("gpupaas-gpu-quota", "acme2-staging")
        assert quota.spec.hard == {"requests.nvidia.com/gpu": "4"}
        assert core.read_namespaced_limit_range("gpupaas-defaults", "acme2-prod")
        scheduling = client.SchedulingV1Api(api)
        assert scheduling.read_priority_class("gpupaas-tenant-acme-eu2").value == 3000
        # The tier catalog's classes, which placement names in every GPU workload it renders.
        tiers = {
            name: scheduling.read_priority_class(name)
            for name in ("gpupaas-enterprise", "gpupaas-standard", "gpupaas-spot")
        }
        assert {n: c.value for n, c in tiers.items()} == {
            "gpupaas-enterprise": 3000,
            "gpupaas-standard": 2000,
            "gpupaas-spot": 1000,
        }
        assert tiers["gpupaas-spot"].preemption_policy == "Never"
        assert client.NetworkingV1Api(api).read_namespaced_network_policy(
            "gpupaas-tenant-isolation", "acme2-prod"
        )
        rb = client.RbacAuthorizationV1Api(api).read_namespaced_role_binding(
            "gpupaas-tenant-admins", "acme2-prod"
        )
        assert rb.subjects[0].name == "gpupaas:acme-eu2"
        custom = client.CustomObjectsApi(api)
        cq = custom.get_cluster_custom_object(
            "kueue.x-k8s.io", "v1beta2", "clusterqueues", "gpupaas-acme-eu2"
        )
        [flavor] = cq["spec"]["resourceGroups"][0]["flavors"]
        assert flavor["name"] == "gpupaas-h100-80gb-dedicated-acme-eu2"
        assert flavor["resources"][0]["nominalQuota"] == "4" and flavor["resources"][0]["lendingLimit"] == "0"
        assert custom.get_cluster_custom_object(
            "kueue.x-k8s.io", "v1beta2", "resourceflavors", flavor["name"]
        )
        lq = custom.get_namespaced_custom_object(
            "kueue.x-k8s.io", "v1beta2", "acme2-prod", "localqueues", "default"
        )
        assert lq["spec"]["clusterQueue"] == "gpupaas-acme-eu2"
    finally:
        api.close()


def _wait(worker: Worker, response: Any) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    out: dict[str, Any] = worker.wait_workflow(response.json()["workflow_id"])["output"]
    return out


def _affinity(dep: Any) -> dict[str, list[str]]:
    required = (
        dep.spec.template.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    )
    [term] = required.node_selector_terms
    return {e.key: [e.operator, *(e.values or [])] for e in term.match_expressions}


def test_deployments_become_workload_objects_replaced_by_sla_and_sharing_changes(
    kube: ControlPlane, tmp_path: Path
) -> None:
    api = config.new_client_from_config(str(kube.kubeconfig))
    apps, scheduling = client.AppsV1Api(api), client.SchedulingV1Api(api)
    worker = Worker(tmp_path, kubeconfig=kube.kubeconfig).start()
    try:
        token = onboard(worker, tenant_doc("globex", "globex8", ["globex8-ml"]))
        with worker.client(token) as c:
            serve = {"deployment": "serve", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 2}
            assert _wait(worker, c.post("/v1/tenants/globex8/deployments", json=serve))["status"] == "applied"
            tune = {"deployment": "tune", "gpu_class": "A100-40GB", "gpus_per_replica": 1, "replicas": 1,
                    "sharing": "time-slicing"}  # fmt: skip
            assert _wait(worker, c.post("/v1/tenants/globex8/deployments", json=tune))["status"] == "applied"

        dep = apps.read_namespaced_deployment("serve", "globex8-ml")
        assert dep.metadata.labels["gpupaas.io/tenant"] == "globex8"
        assert dep.metadata.labels["gpupaas.io/deployment"] == "serve"
        assert dep.spec.replicas == 2
        pod = dep.spec.template.spec
        assert pod.priority_class_name == "gpupaas-standard"
        assert pod.containers[0].resources.limits == {"nvidia.com/gpu": "1"}
        assert pod.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
        assert _affinity(dep) == {
            "gpupaas.io/dedicated-tenant": ["DoesNotExist"],
            "topology.kubernetes.io/region": ["In", "eu-west-1", "us-east-1"],
        }
        assert scheduling.read_priority_class("gpupaas-tenant-globex8").value == 2000

        with worker.client(token) as c:
            r = c.post("/v1/tenants/globex8/sla", json={"tier": "enterprise"})
            assert r.status_code == 202 and r.json()["reason_codes"] == ["SLA_APPROVAL_REQUIRED"], r.text
        worker.approve(worker.wait_approval("globex8")["id"])
        out = worker.wait_workflow(r.json()["workflow_id"])["output"]
        assert out["status"] == "applied" and all(x["replaced"] for x in out["replaced"]), out
        moved = apps.read_namespaced_deployment("serve", "globex8-ml")
        assert moved.spec.template.spec.priority_class_name == "gpupaas-enterprise"
        assert _affinity(moved) == _affinity(dep) and moved.spec.replicas == 2
        assert scheduling.read_priority_class("gpupaas-tenant-globex8").value == 3000

        # The same SLA again: nothing moves, and re-applying the tenant's objects is a no-op.
        version = moved.metadata.resource_version
        with worker.client(token) as c:
            again = _wait(worker, c.post("/v1/tenants/globex8/sla", json={"tier": "enterprise"}))
        assert again["status"] == "applied" and not any(x["replaced"] for x in again["replaced"]), again
        assert apps.read_namespaced_deployment("serve", "globex8-ml").metadata.resource_version == version

        # MIG instead of time-slicing for the A100s: only us-east offers it, so tune moves there.
        before = apps.read_namespaced_deployment("tune", "globex8-ml")
        with worker.client(token) as c:
            shared = c.post("/v1/tenants/globex8/gpu-sharing", json={"mode": "mig", "gpu_class": "A100-40GB"})
            assert _wait(worker, shared)["status"] == "applied"
        after = apps.read_namespaced_deployment("tune", "globex8-ml")
        assert _affinity(before)["topology.kubernetes.io/region"] == ["In", "eu-west-1", "us-east-1"]
        assert _affinity(before)["nvidia.com/gpu.sharing-strategy"] == ["In", "time-slicing"]
        assert _affinity(after)["topology.kubernetes.io/region"] == ["In", "us-east-1"]
        assert _affinity(after)["nvidia.com/mig.strategy"] == ["In", "mixed", "single"]
        # server-side apply dropped the requirement the platform no longer sets
        assert "nvidia.com/gpu.sharing-strategy" not in _affinity(after)
        assert after.spec.template.spec.node_selector == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
    finally:
        worker.stop()
        api.close()


def test_offboarding_acme_eu_destroys_everything_on_the_cluster_and_certifies_it(
    kube: ControlPlane, tmp_path: Path
) -> None:
    # acme-eu's policy (enterprise, eu-only, no preemption) under a fresh name, as acme-eu is in the
    # bundle, on shared H100s: a dedicated pool must name a tenant already in the bundle.
    worker = Worker(tmp_path, kubeconfig=kube.kubeconfig)
    doc = tenant_doc("acme-eu", "acme-eu3", ["acme3-prod", "acme3-staging"], isolation="shared")
    policy = doc["tenant"]
    fleet = yaml.safe_load((EXAMPLES / "fleet.yaml").read_text())["fleet"]
    rendered = tenant_objects.render(policy, fleet)
    api = config.new_client_from_config(str(kube.kubeconfig))
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    adapter = KubernetesAdapter(str(kube.kubeconfig))
    worker.start()
    try:
        token = onboard(worker, doc)
        with worker.client(token) as c:
            llm = {"deployment": "llm", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 2}
            out = _wait(worker, c.post("/v1/tenants/acme-eu3/deployments", json=llm))
            assert out["status"] == "applied", out
        dep = apps.read_namespaced_deployment("llm", "acme3-prod")
        assert dep.metadata.labels["gpupaas.io/tenant"] == "acme-eu3" and dep.spec.replicas == 2
        everything = [o for g in tenant_objects.GROUPS for o in rendered[g]]
        assert all(adapter.exists(o) for o in everything)

        with worker.client(token) as c:
            r = c.post("/v1/tenants/acme-eu3/offboard", json={"reason": "contract ended"})
        assert r.status_code == 202 and r.json()["outcome"] == "NEEDS_APPROVAL", r.text  # enterprise
        worker.approve(worker.wait_approval("acme-eu3")["id"])
        wf = worker.wait_workflow(r.json()["workflow_id"], timeout=300)
        assert wf["status"] == "SUCCESS" and wf["output"]["status"] == "offboarded", wf

        # Gone from the cluster: the workload object and every tenant object, namespaces included
        # (not Terminating: 404, so the namespace controller finished emptying them).
        deployment = "Deployment/acme3-prod/llm"
        for obj in everything:
            assert adapter.get(obj) is None, objects.key(obj)
        for ns in policy["namespaces"]:
            with pytest.raises(client.exceptions.ApiException) as gone:
                core.read_namespace(ns)
            assert gone.value.status == 404
        with pytest.raises(client.exceptions.ApiException) as gone:
            apps.read_namespaced_deployment("llm", "acme3-prod")
        assert gone.value.status == 404

        with worker.client() as c:
            trail = [r for r in audit_records(c.get("/v1/audit", params={"tenant": "acme-eu3"}).text)
                     if r["workflow_id"] == wf["workflow_id"]]  # fmt: skip
            cert = c.get("/v1/tenants/acme-eu3/certificate").json()
            public = c.get("/v1/certificates/public-key").json()["public_key_pem"]
            verified = c.get("/v1/audit/verify").json()
        keys = sorted([objects.key(o) for o in everything] + [deployment])
        [deleted] = [r["detail"] for r in trail if r["event"] == "workload.deleted"]
        assert deleted["object"] == deployment
        # The verification step saw every object absent, having waited for the Terminating namespaces.
        [absent] = [r["detail"] for r in trail if r["event"] == "objects.verified_absent"]
        assert sorted(absent["objects"]) == keys
        assert {f"Namespace//{ns}" for ns in policy["namespaces"]} <= set(absent["waited_for"]), absent
        # A signed certificate naming exactly those objects, which verifies with the public key.
        assert cert["certificate"]["objects_destroyed_and_verified_absent"] == keys
        assert certificate.verify(cert, public) == []
        assert [r["detail"]["sha256"] for r in trail if r["event"] == "certificate.issued"] == [
            cert["sha256"]
        ]
        # And an audit trail that verifies, online and (the archive) offline.
        assert verified["ok"] and verified["anchor"]["seq"] <= verified["chain_end"], verified
        archive = Path(wf["output"]["archive"])
        report = anchor.verify_export(archive.read_text(), certificate.load_public_pem(public))
        assert report.ok, report.as_json()
        assert "objects.verified_absent" in {
            r["event"] for r in map(json.loads, archive.read_text().splitlines()[:-1])
        }
    finally:
        worker.stop()
        adapter.close()
        api.close()

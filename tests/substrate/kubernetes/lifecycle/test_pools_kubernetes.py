"""Dedicated pools carved from shared nodes of a real kube-apiserver (tests/e2e/controlplane.py):
nodes labelled and tainted by server-side apply, the deployments running there preempted only
as far as the PDP allows, the tenant waiting with a reason while no node can be had, released on
offboarding and given back as they were when the carving fails."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from tests.e2e.controlplane import ControlPlane
from tests.lifecycle.harness import (
    Worker,
    audit_records,
    create_gpu_node,
    h100_deployment,
    onboard,
    tenant_doc,
)

MAINTENANCE = {"key": "example.com/maintenance", "value": "window-3", "effect": "PreferNoSchedule"}
DEDICATED = {"key": "gpupaas.io/dedicated", "value": "acmek", "effect": "NoSchedule"}


def _node(kube: ControlPlane, name: str) -> tuple[dict[str, str], list[dict[str, Any]]]:
    api = config.new_client_from_config(str(kube.kubeconfig))
    try:
        node = client.CoreV1Api(api).read_node(name)
    finally:
        api.close()
    taints = [{"key": t.key, "value": t.value, "effect": t.effect} for t in node.spec.taints or []]
    return dict(node.metadata.labels), taints


def _pod_on(kube: ControlPlane, node: str, namespace: str, tenant: str, deployment: str) -> None:
    """What the scheduler would have done for the deployment: one pod bound to the node."""
    api = config.new_client_from_config(str(kube.kubeconfig))
    try:
        client.CoreV1Api(api).create_namespaced_pod(
            namespace,
            client.V1Pod(
                metadata=client.V1ObjectMeta(
                    name=f"{deployment}-0",
                    labels={"gpupaas.io/tenant": tenant, "gpupaas.io/deployment": deployment},
                ),
                spec=client.V1PodSpec(
                    node_name=node, containers=[client.V1Container(name="model", image="model-server:1")]
                ),
            ),
        )
    finally:
        api.close()


def _set_shared_nodes(worker: Worker, nodes: int) -> None:
    path = worker.examples / "fleet.yaml"
    doc = yaml.safe_load(path.read_text())
    pool = doc["fleet"]["clusters"]["eu-west"]["pools"]["eu-h100-shared"]
    pool["nodes"] = nodes
    pool["node_names"] = [f"eu-shared-{i}" for i in range(1, nodes + 1)]  # the nodes the test creates
    path.write_text(yaml.safe_dump(doc))


def _deploy(worker: Worker, token: str, tenant: str, body: dict[str, Any]) -> None:
    with worker.client(token) as c:
        r = c.post(f"/v1/tenants/{tenant}/deployments", json=body)
        assert r.status_code == 202, r.text
    assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"


def _tenant(worker: Worker, name: str) -> dict[str, Any]:
    with worker.client() as c:
        return c.get(f"/v1/tenants/{name}").json()  # type: ignore[no-any-return]


def test_pool_waits_for_a_node_it_may_take_then_preempts_a_spot_deployment_and_is_released(
    kube: ControlPlane, tmp_path: Path
) -> None:
    # The EU shared H100 pool has one node, running a standard tenant's deployment that does not
    # allow preemption.
    create_gpu_node(kube.kubeconfig, "eu-shared-1", "eu-h100-shared", "eu-west-1")
    worker = Worker(tmp_path, kubeconfig=kube.kubeconfig, capacity_retry_schedule="")
    _set_shared_nodes(worker, 1)
    worker.start()
    try:
        standard = onboard(worker, tenant_doc("globex", "glob9", ["glob9-ml"]))
        _deploy(worker, standard, "glob9", h100_deployment("serve", 1))
        _pod_on(kube, "eu-shared-1", "glob9-ml", "glob9", "serve")

        with worker.client() as c:
            r = c.post("/v1/tenants", json=tenant_doc("acme-eu", "acmek", ["acmek-prod"]))
            assert r.status_code == 202 and r.json()["reason_codes"] == ["DEDICATED_POOL_PROVISIONING"]
        worker.approve(worker.wait_approval("acmek")["id"])
        deadline = time.monotonic() + 60
        while (tenant := _tenant(worker, "acmek")).get("provisioning", {}).get(
            "status"
        ) != "waiting_for_capacity":
            assert time.monotonic() < deadline, tenant
            time.sleep(0.2)
        assert tenant["state"] == "provisioning"
        assert tenant["provisioning"]["reason"] == (
            "no capacity for a dedicated H100-80GB pool of 4 GPU(s) for tenant 'acmek': pool "
            "'eu-h100-shared' of cluster 'eu-west' has 0 free node(s) of the 1 needed; the PDP does "
            "not let tenant 'acmek' preempt glob9/serve on pool 'eu-h100-shared' of cluster 'eu-west' "
            "(PREEMPTION_VICTIM_PROTECTED)"
        )
        untouched = _node(kube, "eu-shared-1")
        assert untouched[0]["gpupaas.io/pool"] == "eu-h100-shared" and untouched[1] == []
        assert "gpupaas.io/dedicated-tenant" not in untouched[0]

        # Capacity added: a second shared node, running a spot tenant's deployment, and the fleet
        # document says so; a capacity retry wakes the waiting onboarding.
        spot = onboard(worker, tenant_doc("initech-spot", "spot9", ["spot9-batch"], data_residency="any",
                                          entitlements={"H100-80GB": 8}))  # fmt: skip
        _deploy(worker, spot, "spot9", h100_deployment("batch", 2))
        create_gpu_node(kube.kubeconfig, "eu-shared-2", "eu-h100-shared", "eu-west-1", [MAINTENANCE])
        _pod_on(kube, "eu-shared-2", "spot9-batch", "spot9", "batch")
        _set_shared_nodes(worker, 2)
        with worker.client() as c:
            assert c.post("/v1/capacity/retry", json={}).json()["pool_requests_woken"] == ["onboard-acmek"]
        wf = worker.wait_workflow("onboard-acmek")
        assert wf["status"] == "SUCCESS" and wf["output"]["status"] == "active", wf

        tenant = _tenant(worker, "acmek")
        assert tenant["carved_pools"] == [
            {"pool": "acmek-h100-80gb", "cluster": "eu-west", "region": "eu-west-1", "gpu_class": "H100-80GB",
             "source_pool": "eu-h100-shared", "nodes": ["eu-shared-2"]}
        ]  # fmt: skip
        labels, taints = _node(kube, "eu-shared-2")
        assert labels["gpupaas.io/pool"] == "acmek-h100-80gb"
        assert labels["gpupaas.io/dedicated-tenant"] == "acmek"
        assert taints == [MAINTENANCE, DEDICATED]  # the node's own taint kept
        assert "gpupaas.io/dedicated-tenant" not in _node(kube, "eu-shared-1")[0]
        fleet = yaml.safe_load((tmp_path / "state" / "lifecycle" / "fleet.yaml").read_text())["fleet"]
        pools = fleet["clusters"]["eu-west"]["pools"]
        assert pools["eu-h100-shared"]["nodes"] == 1 and pools["acmek-h100-80gb"]["nodes"] == 1

        # The spot deployment on the node was preempted (with the PDP's preempt decision) and
        # queued again; the standard one it may not preempt kept running.
        with worker.client() as c:
            trail = audit_records(c.get("/v1/audit").text)
            deployments = {d["name"]: d for d in c.get("/v1/tenants/glob9/deployments").json()}
        assert deployments["serve"]["state"] == "running"
        [preempt] = [r for r in trail if r["event"] == "decision" and r["detail"]["kind"] == "preempt"
                     and r["detail"]["outcome"] == "ALLOW"]  # fmt: skip
        moves = [
            (r["detail"]["from"], r["detail"]["to"], r["decision_id"])
            for r in trail
            if r["event"] == "deployment.transition"
            and r["tenant"] == "spot9"
            and r["workflow_id"] == "onboard-acmek"
        ]
        assert moves == [
            ("running", "preempted", preempt["decision_id"]),
            ("preempted", "queued", preempt["decision_id"]),
        ]
        [carved] = [r for r in trail if r["event"] == "pool.carved"]
        assert carved["detail"]["victims"] == ["spot9/batch"] and carved["detail"]["mode"] == "kubernetes"
        refused = [r for r in trail if r["event"] == "decision" and r["detail"]["kind"] == "preempt"
                   and r["detail"]["outcome"] == "DENY"]  # fmt: skip
        assert refused, "the refused preemption of glob9/serve is recorded"

        # The tenant's deployments are placed in its pool.
        admin = worker.admin_token
        _deploy(worker, admin, "acmek", h100_deployment("llm", 2))
        api = config.new_client_from_config(str(kube.kubeconfig))
        try:
            pod = client.AppsV1Api(api).read_namespaced_deployment("llm", "acmek-prod").spec.template.spec
        finally:
            api.close()
        [term] = (
            pod.affinity.node_affinity.required_during_scheduling_ignored_during_execution.node_selector_terms
        )
        assert ("gpupaas.io/pool", ["acmek-h100-80gb"]) in [(e.key, e.values) for e in term.match_expressions]

        # Offboarding gives the node back to the shared pool as it was.
        with worker.client() as c:
            r = c.post("/v1/tenants/acmek/offboard", json={"reason": "test"})
        worker.approve(worker.wait_approval("acmek")["id"])
        assert worker.wait_workflow(r.json()["workflow_id"], timeout=300)["output"]["status"] == "offboarded"
        labels, taints = _node(kube, "eu-shared-2")
        assert labels["gpupaas.io/pool"] == "eu-h100-shared" and "gpupaas.io/dedicated-tenant" not in labels
        assert taints == [MAINTENANCE]
        fleet = yaml.safe_load((tmp_path / "state" / "lifecycle" / "fleet.yaml").read_text())["fleet"]
        pools = fleet["clusters"]["eu-west"]["pools"]
        assert pools["eu-h100-shared"]["nodes"] == 2 and "acmek-h100-80gb" not in pools
    finally:
        worker.stop()


def test_a_failed_carving_restores_the_nodes_labels_and_taints(kube: ControlPlane, tmp_path: Path) -> None:
    create_gpu_node(kube.kubeconfig, "eu-shared-3", "eu-h100-shared", "eu-west-1", [MAINTENANCE])
    before = _node(kube, "eu-shared-3")
    worker = Worker(tmp_path, kubeconfig=kube.kubeconfig, capacity_retry_schedule="")
    worker.start(env={"PDP_LIFECYCLE_FAIL_AT": "pool:carve"})
    try:
        with worker.client() as c:
            r = c.post("/v1/tenants", json=tenant_doc("acme-eu", "acmef", ["acmef-prod"]))
            assert r.status_code == 202, r.text
        worker.approve(worker.wait_approval("acmef")["id"])
        wf = worker.wait_workflow("onboard-acmef")
        assert wf["output"]["status"] == "failed", wf
        assert _tenant(worker, "acmef")["state"] == "failed"
        with worker.client() as c:
            trail = [r for r in audit_records(c.get("/v1/audit").text) if r["tenant"] == "acmef"]
        [released] = [r["detail"] for r in trail if r["event"] == "pool.released"]
        assert released["nodes"] == ["eu-shared-3"] and released["reason"].startswith("compensation: ")
        # Carved once per attempt, then given back: the labels and taints as they were, plus the
        # GPU operator's sharing labels (pdp/substrate/gpu_operator), which select its pool's config.
        labels, taints = _node(kube, "eu-shared-3")
        assert labels.pop("nvidia.com/device-plugin.config") == "eu-h100-shared"
        assert labels.pop("nvidia.com/gpu.sharing-strategy") == "none"
        assert labels.pop("nvidia.com/mig.config") == "all-disabled"
        assert labels.pop("nvidia.com/mig.strategy") == "none"
        assert (labels, taints) == before
    finally:
        worker.stop()

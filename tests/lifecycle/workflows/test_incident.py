"""Incident response on a real kube-apiserver: a faulty node is cordoned and tainted, the deployments
on it re-placed by tier (enterprise first) through the PDP, their tenants notified with the SLA
impact, and the node released when an operator resolves it. The worker is killed (-9) in the middle
of the re-placements; the restarted worker completes the incident with one cordon and one
re-placement per deployment. Only an admin token reports, lists or resolves incidents."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from pdp.lifecycle.services import incidents
from pdp.substrate.kubernetes import cordon
from pdp.substrate.kubernetes.cordon import INCIDENT_TAINT
from tests.e2e.controlplane import ControlPlane
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

H100 = "H100-80GB"
NODE = "eu-shared-1"
MAINTENANCE = {"key": "example.com/maintenance-window", "value": "sunday", "effect": "PreferNoSchedule"}
ACME = tenant_doc("acme-eu", "acmei", ["acmei-prod"], isolation="shared", entitlements={H100: 32})
GLOBEX = tenant_doc("globex", "globexi", ["globexi-ml"], entitlements={H100: 32})
INITECH = tenant_doc("initech-spot", "initechi", ["initechi-batch"], entitlements={H100: 32})


@pytest.fixture(scope="module")
def world(
    kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Worker, dict[str, str]]]:
    create_gpu_node(kube.kubeconfig, NODE, "eu-h100-shared", "eu-west-1", [MAINTENANCE])
    worker = Worker(
        tmp_path_factory.mktemp("incident"), kubeconfig=kube.kubeconfig, capacity_retry_schedule=""
    )
    worker.start()
    try:
        tokens = {d["tenant"]["name"]: onboard(worker, d) for d in (ACME, GLOBEX, INITECH)}
        for tenant, name, replicas in (
            ("initechi", "batch", 2),
            ("acmei", "chat", 2),
            ("globexi", "train", 1),
        ):
            deploy(worker, tenant, h100_deployment(name, replicas))
        yield worker, tokens
    finally:
        worker.stop()


def _core(kube: ControlPlane) -> tuple[Any, client.CoreV1Api]:
    api = config.new_client_from_config(str(kube.kubeconfig))
    return api, client.CoreV1Api(api)


def _pod_on_node(kube: ControlPlane, namespace: str, name: str, tenant: str, deployment: str) -> None:
    """A pod of the deployment bound to the node (no scheduler or kubelet runs: the binding is the
    pod's spec.nodeName), labelled as the lifecycle's workload objects label their pods."""
    api, core = _core(kube)
    try:
        try:
            core.create_namespaced_service_account(
                namespace, client.V1ServiceAccount(metadata={"name": "default"})
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(
                name=name, labels={"gpupaas.io/tenant": tenant, "gpupaas.io/deployment": deployment}
            ),
            spec=client.V1PodSpec(
                node_name=NODE,
                automount_service_account_token=False,
                containers=[client.V1Container(name="server", image="registry.example/llm:1")],
            ),
        )
        try:
            core.create_namespaced_pod(namespace, pod)
        except ApiException as exc:
            if exc.status != 409:  # there from an earlier run of the test
                raise
    finally:
        api.close()


def _node(kube: ControlPlane) -> tuple[bool, list[dict[str, str]]]:
    api, core = _core(kube)
    try:
        spec = core.read_node(NODE).spec
        taints = [{"key": t.key, "value": t.value, "effect": t.effect} for t in spec.taints or []]
        return bool(spec.unschedulable), taints
    finally:
        api.close()


def _trail(worker: Worker, token: str | None = None) -> list[dict[str, Any]]:
    with worker.client(token) as c:
        return audit_records(c.get("/v1/audit").text)


# Three tenants onboarded and three worker starts on a real API server: slow on a loaded machine.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("pause", ["incident:replace:train", "incident:cordoned"])
def test_a_faulty_node_is_cordoned_its_deployments_replaced_by_tier_once_across_a_kill_and_released(
    kube: ControlPlane, world: tuple[Worker, dict[str, str]], pause: str
) -> None:
    """Killed in the middle of the re-placements (acme's enterprise deployment re-placed, globex's
    standard one being re-placed), or right after the node was cordoned and before that was
    recorded (the cordon applied again, recorded once, the node's state before it kept)."""
    worker, tokens = world
    _pod_on_node(kube, "initechi-batch", "batch-6c7d8f9b5-zt4kp", "initechi", "batch")
    report = {
        "node": NODE,
        "cause": "xid 79",
        "xids": [79],
        "gpus": ["0", "1", "2"],
        # as dcgm-exporter labels the faulty GPUs' series: two of acme's chat pods, globex's trainer
        "pods": [
            {"namespace": "acmei-prod", "pod": "chat-7d9c8b6f5-x2k4q"},
            {"namespace": "acmei-prod", "pod": "chat-7d9c8b6f5-b9z2m"},
            {"namespace": "globexi-ml", "pod": "train-5f6d7c8b9-qw8rt"},
        ],
    }
    # Only an admin reports, lists and resolves incidents.
    with worker.client(tokens["acmei"]) as c:
        assert c.post("/v1/incidents", json=report).status_code == 403
        assert c.get("/v1/incidents").status_code == 403
    with worker.client() as c:
        bad = c.post("/v1/incidents", json={**report, "node": "no-such-node"})
        assert bad.status_code == 422 and "no-such-node" in bad.text

    worker.kill9()
    worker.start(env={"PDP_LIFECYCLE_PAUSE_AT": pause})
    with worker.client() as c:
        r = c.post("/v1/incidents", json=report)
    assert r.status_code == 202, r.text
    incident = r.json()["incident"]
    assert worker.wait_paused(timeout=120) == pause
    worker.kill9()
    worker.start()

    view = incident_in_state(worker, incident, "awaiting_resolution")
    assert [(a["tenant"], a["deployment"], a["tier"]) for a in view["affected"]] == [
        ("acmei", "chat", "enterprise"),
        ("globexi", "train", "standard"),
        ("initechi", "batch", "spot"),
    ]
    unschedulable, taints = _node(kube)
    assert unschedulable
    assert taints == [MAINTENANCE, {"key": INCIDENT_TAINT, "value": "xid-79", "effect": "NoExecute"}]

    records = [r for r in _trail(worker) if r["workflow_id"] == incident]
    events = Counter(r["event"] for r in records)
    assert events["incident.opened"] == 1 and events["node.cordoned"] == 1
    replacements = Counter(
        (r["tenant"], r["detail"]["replacement_of"])
        for r in records
        if r["event"] == "decision" and r["detail"].get("replacement_of")
    )
    assert replacements == {("acmei", "chat"): 1, ("globexi", "train"): 1, ("initechi", "batch"): 1}
    assert all(
        r["detail"]["outcome"] == "ALLOW" and r["detail"]["cause"] == f"incident {incident}"
        for r in records
        if r["event"] == "decision"
    )
    notified = Counter(r["tenant"] for r in records if r["event"] == "incident.notified")
    assert notified == {"acmei": 1, "globexi": 1, "initechi": 1}
    impact = {r["tenant"]: r["detail"] for r in records if r["event"] == "incident.sla_impact"}
    assert sorted(impact) == ["acmei", "globexi", "initechi"]
    assert [d["gpus"] for d in impact["acmei"]["deployments"]] == [2]  # two chat pods, 1 GPU each
    assert all(i["gpu_minutes"] > 0 for i in impact.values())
    # Each tenant sees its own notification, not the others'.
    own = [r for r in _trail(worker, tokens["globexi"]) if r["detail"].get("incident") == incident]
    assert {r["tenant"] for r in own} == {"globexi"} and len(own) == 2
    assert "acmei" not in json.dumps(own), "a tenant's notification names another tenant's pods"

    with worker.client() as c:
        assert c.post("/v1/incidents", json=report).status_code == 409  # already open for the node
        assert [i["incident"] for i in c.get("/v1/incidents", params={"open_only": True}).json()] == [
            incident
        ]
    with worker.client(tokens["acmei"]) as c:
        assert c.post(f"/v1/incidents/{incident}/resolve", json={}).status_code == 403
    assert _node(kube)[0], "a tenant's refused resolution released the node"

    with worker.client() as c:
        r = c.post(f"/v1/incidents/{incident}/resolve", json={"comment": "GPU 0 replaced"})
    assert r.status_code == 202, r.text
    wf = worker.wait_workflow(incident, timeout=120)
    assert wf["status"] == "SUCCESS" and wf["output"]["state"] == "resolved", wf
    assert _node(kube) == (False, [MAINTENANCE])
    released = [r for r in _trail(worker) if r["workflow_id"] == incident and r["event"] == "node.released"]
    assert len(released) == 1 and released[0]["detail"]["comment"] == "GPU 0 replaced"
    with worker.client() as c:
        assert c.post(f"/v1/incidents/{incident}/resolve", json={}).status_code == 409
    # The CLI reads the same: nothing open now, the incident resolved.
    cli = [sys.executable, "-m", "pdp.cli", "lifecycle", "incident"]
    where = ["--url", worker.url, "--token", worker.admin_token]
    listed = subprocess.run([*cli, "list", "--open", *where], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and json.loads(listed.stdout) == [], listed.stderr
    shown = subprocess.run([*cli, "show", incident, *where], capture_output=True, text=True, timeout=120)
    assert json.loads(shown.stdout)["state"] == "resolved", shown.stderr
    refused = subprocess.run(
        [*cli, "resolve", incident, "--url", worker.url, "--token", tokens["initechi"]],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 1 and "needs an admin token" in refused.stdout


def test_sla_impact_is_gpus_times_minutes_to_replacement() -> None:
    cost = incidents.impact(
        [{"deployment": "chat", "gpus": 2}, {"deployment": "embed", "gpus": 1}],
        opened_at=100.0,
        replaced_at=190.0,
    )
    assert cost == {
        "gpu_minutes": 4.5,
        "deployments": [
            {"deployment": "chat", "gpus": 2, "minutes": 1.5, "gpu_minutes": 3.0},
            {"deployment": "embed", "gpus": 1, "minutes": 1.5, "gpu_minutes": 1.5},
        ],
    }
    assert incidents.impact([{"deployment": "x", "gpus": 8}], 100.0, 50.0)["gpu_minutes"] == 0.0


def test_an_operators_own_cordon_outlives_the_incident() -> None:
    now = cordon.state({"spec": {"unschedulable": True, "taints": [MAINTENANCE]}})
    taken = cordon.cordon(NODE, now, "xid 48,79")
    assert taken["spec"]["taints"][-1] == {"key": INCIDENT_TAINT, "value": "xid-48-79", "effect": "NoExecute"}
    assert cordon.is_cordoned(cordon.state(taken))
    # given back: still cordoned (the operator's), the incident taint gone, the others kept
    back = cordon.release(NODE, cordon.state(taken), was_unschedulable=True)
    assert back["spec"] == {"taints": [MAINTENANCE], "unschedulable": True}
    assert "spec" not in cordon.release(NODE, cordon.state({"spec": {"taints": []}}), was_unschedulable=False)

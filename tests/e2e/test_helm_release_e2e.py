"""The chart as a Helm release against the real kube-apiserver of the end-to-end tier: `helm install
--wait`, `helm upgrade --wait` with a values change that rolls the PDP Deployment, `helm rollback`
and `helm uninstall`. There is no kubelet here: KWOK (scripts/build-kwok, with the living fleet's
stages, bench/fleet/kwok-stages.yaml) keeps three fake nodes Ready and marks the pods the scheduler
binds to them Running and Ready, so `--wait` waits for real Deployments, ReplicaSets and pods made
by the real controllers. What the pods would run is the image scripts/build-image built (the
chart's image is set to it), run with `buildah run` in tests/deploy/test_image.py."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client, config

from tests.artifacts import cached_artifact
from tests.conftest import ROOT
from tests.e2e.controlplane import ControlPlane, kube_binaries
from tests.helm import CHART, helm_binary

STAGES = ROOT / "bench" / "fleet" / "kwok-stages.yaml"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"  # bench/fleet/mapping.py's
NAMESPACE = "gpupaas-system"
NODES = ("node-a", "node-b", "node-c")  # the PDP's pods spread over nodes (hard): three replicas


@dataclass
class Cluster:
    cp: ControlPlane
    api: client.ApiClient

    def helm(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(helm_binary()), "--kubeconfig", str(self.cp.kubeconfig), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _node(name: str, zone: str) -> dict[str, Any]:
    labels = {"kubernetes.io/hostname": name, "topology.kubernetes.io/zone": zone, "type": "kwok"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {KWOK_ANNOTATION: "fake"}},
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # Its own API server: the release's webhook configuration (failurePolicy Fail, no PDP behind
    # it) must not reach the session's other tests.
    cp = ControlPlane(kube_binaries(), tmp_path_factory.mktemp("helm-release-kube"))
    try:
        cp.start()
        cp.start_controller_manager(controllers=("namespace", "garbagecollector", "deployment", "replicaset"))
        cp.start_scheduler(
            {"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration"}
        )
        cp._spawn(
            "kwok",
            [
                str(cached_artifact("build-kwok")),
                f"--kubeconfig={cp.kubeconfig}",
                f"--config={STAGES}",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                "--cidr=10.128.0.0/10",
                "--node-ip=10.127.0.1",
            ],
        )
        api = config.new_client_from_config(str(cp.kubeconfig))
        core = client.CoreV1Api(api)
        resources = {"cpu": "16", "memory": "64Gi", "pods": "110"}
        for i, name in enumerate(NODES):
            core.create_node(_node(name, f"zone-{i % 2}"))
            core.patch_node_status(name, {"status": {"capacity": resources, "allocatable": resources}})
        deadline = time.monotonic() + 120
        while True:
            cp._check_alive()
            ready = [
                n
                for n in core.list_node().items
                if any(c.type == "Ready" and c.status == "True" for c in (n.status.conditions or ()))
            ]
            if len(ready) == len(NODES):
                break
            assert time.monotonic() < deadline, cp.log_tail("kwok")
            time.sleep(0.5)
        yield Cluster(cp, api)
        api.close()
    finally:
        cp.stop()


def _image_sets() -> list[str]:
    """--set image.repository/tag: the image scripts/build-image built (its env file)."""
    env = dict(
        line.split("=", 1) for line in (cached_artifact("build-image") / "image.env").read_text().splitlines()
    )
    repository, tag = env["IMAGE_REFERENCE"].rsplit(":", 1)
    return ["--set", f"image.repository={repository}", "--set", f"image.tag={tag}"]


def _pdp_deployment(cluster: Cluster) -> Any:
    return client.AppsV1Api(cluster.api).read_namespaced_deployment("pdp", NAMESPACE)


def _rolled_out(cluster: Cluster, timeout: float = 120) -> Any:
    """The PDP Deployment once its rollout is over: every replica updated and ready, no old pod
    left. `helm upgrade --wait` (v3) returns earlier, as soon as the new ReplicaSet has
    `replicas - maxUnavailable` ready pods (2 of 3 here; helm/helm#3173), which is what the clean
    clone's CI run of 2026-12-04 saw (updated 2, replicas 4)."""
    deadline = time.monotonic() + timeout
    while True:
        deployment = _pdp_deployment(cluster)
        status = deployment.status
        wanted = deployment.spec.replicas
        if (
            status.observed_generation == deployment.metadata.generation
            and status.updated_replicas == wanted
            and status.ready_replicas == wanted
            and status.replicas == wanted
        ):
            return deployment
        assert time.monotonic() < deadline, status
        time.sleep(0.5)


def _exists(read: Any, *args: str) -> bool:
    try:
        read(*args)
        return True
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise


def _release_objects(cluster: Cluster) -> dict[str, bool]:
    """The webhook configuration, the PDP's Service, PDB and RBAC: there or not."""
    api = cluster.api
    admission = client.AdmissionregistrationV1Api(api)
    core = client.CoreV1Api(api)
    policy = client.PolicyV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    return {
        "webhook": _exists(admission.read_validating_webhook_configuration, "gpupaas-pdp"),
        "service": _exists(core.read_namespaced_service, "pdp", NAMESPACE),
        "pdb": _exists(policy.read_namespaced_pod_disruption_budget, "pdp", NAMESPACE),
        "serviceaccount": _exists(core.read_namespaced_service_account, "pdp", NAMESPACE),
        "clusterrole": _exists(rbac.read_cluster_role, "gpupaas-pdp"),
        "clusterrolebinding": _exists(rbac.read_cluster_role_binding, "gpupaas-pdp"),
    }


@pytest.mark.timeout(900)
def test_install_upgrade_rollback_uninstall(cluster: Cluster) -> None:
    image = _image_sets()
    install = cluster.helm("install", "gpupaas", str(CHART), *image, "--wait", "--timeout", "3m")
    assert install.returncode == 0, install.stderr + cluster.cp.log_tail("kwok")
    assert set(_release_objects(cluster).values()) == {True}, _release_objects(cluster)
    first = _pdp_deployment(cluster)
    assert first.status.ready_replicas == 3
    (container,) = [c for c in first.spec.template.spec.containers if c.name == "pdp"]
    assert container.image == f"{image[1].split('=', 1)[1]}:{image[3].split('=', 1)[1]}"

    # A values change that rolls the PDP's pods: a new pod template, a new ReplicaSet.
    upgrade = cluster.helm(
        "upgrade", "gpupaas", str(CHART), *image, "--set", "webhook.timeoutSeconds=7",
        "--set", "metrics.scrapeAnnotations=false", "--wait", "--timeout", "3m",
    )  # fmt: skip
    assert upgrade.returncode == 0, upgrade.stderr
    second = _pdp_deployment(cluster)
    assert second.metadata.generation > first.metadata.generation
    # What helm's --wait promises at return: the new ReplicaSet short of at most maxUnavailable (1).
    (new_set,) = [
        rs
        for rs in client.AppsV1Api(cluster.api)
        .list_namespaced_replica_set(NAMESPACE, label_selector="app.kubernetes.io/name=gpupaas-pdp")
        .items
        if rs.metadata.annotations.get("deployment.kubernetes.io/revision")
        == second.metadata.annotations.get("deployment.kubernetes.io/revision")
    ]
    assert (new_set.status.ready_replicas or 0) >= 2, new_set.status
    second = _rolled_out(cluster)
    assert second.status.updated_replicas == 3 and second.status.ready_replicas == 3
    assert not (second.spec.template.metadata.annotations or {}).get("prometheus.io/scrape")
    hooks = client.AdmissionregistrationV1Api(cluster.api).read_validating_webhook_configuration(
        "gpupaas-pdp"
    )
    assert {w.timeout_seconds for w in hooks.webhooks} == {7}

    rollback = cluster.helm("rollback", "gpupaas", "1", "--wait", "--timeout", "3m")
    assert rollback.returncode == 0, rollback.stderr
    third = _pdp_deployment(cluster)
    assert (third.spec.template.metadata.annotations or {}).get("prometheus.io/scrape") == "true"
    hooks = client.AdmissionregistrationV1Api(cluster.api).read_validating_webhook_configuration(
        "gpupaas-pdp"
    )
    assert {w.timeout_seconds for w in hooks.webhooks} == {5}
    history = cluster.helm("history", "gpupaas", "-o", "json")
    assert history.returncode == 0, history.stderr
    assert '"revision":3' in history.stdout.replace(" ", "")

    uninstall = cluster.helm("uninstall", "gpupaas", "--wait", "--timeout", "3m")
    assert uninstall.returncode == 0, uninstall.stderr
    assert set(_release_objects(cluster).values()) == {False}, _release_objects(cluster)
    assert cluster.helm("status", "gpupaas").returncode != 0

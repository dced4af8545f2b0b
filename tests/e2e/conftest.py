"""Fixtures for the end-to-end tier: a real etcd + kube-apiserver + kube-scheduler on loopback,
the PDP (real OPA) with its admission webhook and scheduler extender registered, GPU nodes with
GPU feature discovery labels, and tenant namespaces."""

from __future__ import annotations

import contextlib
import copy
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from pdp.embedded import EmbeddedPDP
from pdp.net.certs import CertPair, issue_server_cert, make_ca
from pdp.net.clientauth import ClientAuth
from pdp.substrate.kubernetes.enforcement.cluster import ClusterState
from pdp.substrate.kubernetes.enforcement.extender import ExtenderServer, SchedulerExtender
from pdp.substrate.kubernetes.enforcement.webhook import AdmissionWebhook, WebhookServer
from pdp.substrate.kubernetes.objects import tier_catalog
from tests.conftest import EXAMPLES, embedded_settings
from tests.e2e.controlplane import ROOT, ControlPlane, kube_binaries

H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-40GB"

# name: (region, product, pool, dedicated tenant or None, sharing strategy)
NODES: dict[str, tuple[str, str, str, str | None, str]] = {
    "eu-acme-1": ("eu-west-1", H100, "acme-h100-dedicated", "acme-eu", "none"),
    "eu-acme-2": ("eu-west-1", H100, "acme-h100-dedicated", "acme-eu", "none"),
    "eu-shared-1": ("eu-west-1", H100, "eu-h100-shared", None, "none"),
    "eu-shared-2": ("eu-west-1", H100, "eu-h100-shared", None, "none"),
    "us-shared-1": ("us-east-1", H100, "us-h100-shared", None, "none"),
    "us-shared-2": ("us-east-1", H100, "us-h100-shared", None, "none"),
    "us-spot-1": ("us-east-1", A100, "us-a100-spot", None, "time-slicing"),
}

TENANT_NAMESPACES = {"acme-prod": "acme-eu", "globex-ml": "globex", "initech-batch": "initech-spot"}


def node_object(name: str, taint_dedicated: bool = True) -> client.V1Node:
    region, product, pool, tenant, sharing = NODES[name]
    labels = {
        "kubernetes.io/hostname": name,
        "topology.kubernetes.io/region": region,
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.count": "8",
        "nvidia.com/gpu.product": product if sharing == "none" else f"{product}-SHARED",
        "nvidia.com/gpu.sharing-strategy": sharing,
        "gpupaas.io/pool": pool,
    }
    taints = []
    if tenant:
        labels["gpupaas.io/dedicated-tenant"] = tenant
        if taint_dedicated:
            taints.append(client.V1Taint(key="gpupaas.io/dedicated", value=tenant, effect="NoSchedule"))
    return client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1NodeSpec(taints=taints or None),
    )


NODE_STATUS = {
    "status": {
        "capacity": {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"},
        "allocatable": {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "8"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "e2e"}],
    }
}


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(kube_binaries(), tmp_path_factory.mktemp("kube"))
    try:
        # Inside the try: a control plane that fails to come up must not leave etcd running.
        yield cp.start()
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(str(control_plane.kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture(scope="session")
def pdp_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPDP]:
    root = tmp_path_factory.mktemp("pdp")
    shutil.copytree(EXAMPLES, root / "examples")
    with EmbeddedPDP(embedded_settings(root)) as stack:
        yield stack


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pdp-pki")
    ca = make_ca(d)
    serving = issue_server_cert(ca, d / "pdp", ["127.0.0.1", "localhost"])
    return {"ca": ca.cert, "cert": serving.cert, "key": serving.key}


class Enforcement:
    """The PDP's enforcement points, registered with the API server and the scheduler: over TLS,
    answering only the client certificates of `control_plane`'s kube-apiserver (the webhook) and
    kube-scheduler (the extender), as deploy/ configures them."""

    def __init__(
        self, stack: EmbeddedPDP, api: client.ApiClient, pki: dict[str, Path], control_plane: ControlPlane
    ) -> None:
        assert control_plane.components_ca is not None, "start() the control plane first"
        assert control_plane.webhook_clients_ca is not None
        self.pki = pki
        self.scheduler_client = control_plane.scheduler_client
        self.cluster = ClusterState(api).start()
        self._stack = stack
        self._webhook_clients = ClientAuth(
            control_plane.webhook_clients_ca.cert, frozenset({"kube-apiserver"})
        )
        self.webhook = self._webhook_server(port=0)
        self.extender = ExtenderServer(
            SchedulerExtender(stack.point, cluster=self.cluster),
            host="127.0.0.1",
            port=0,
            cert_file=pki["cert"],
            key_file=pki["key"],
            client_auth=ClientAuth(control_plane.components_ca.cert, frozenset({"kube-scheduler"})),
        ).start()

    def scheduler_config(self) -> dict[str, Any]:
        """The shipped scheduler configuration calling this extender with kube-scheduler's client
        certificate."""
        return scheduler_configuration(self.extender.url, self.pki["ca"], self.scheduler_client)

    def _webhook_server(self, port: int) -> WebhookServer:
        return WebhookServer(
            AdmissionWebhook(self._stack.point, cluster=self.cluster),
            host="127.0.0.1",
            port=port,
            cert_file=self.pki["cert"],
            key_file=self.pki["key"],
            client_auth=self._webhook_clients,
        ).start()

    def stop_webhook(self) -> None:
        self.webhook.stop()

    @contextlib.contextmanager
    def webhook_stopped(self) -> Iterator[None]:
        """The webhook down for the block, then up again on its port (the registered URL), so
        the session's later tests find it as they would have."""
        port = self.webhook.port
        self.stop_webhook()
        try:
            yield
        finally:
            self.webhook = self._webhook_server(port=port)

    def stop(self) -> None:
        for part in (self.webhook, self.extender, self.cluster):
            with contextlib.suppress(Exception):  # a test may have stopped it already
                part.stop()


def webhook_configuration(url: str, ca_file: Path) -> dict[str, Any]:
    """The shipped deploy/kubernetes/webhook.yaml, pointed at the local webhook."""
    import base64

    shipped = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "webhook.yaml").read_text())
    doc = copy.deepcopy(shipped)
    for hook in doc["webhooks"]:
        hook["clientConfig"] = {
            "url": f"{url}/validate",
            "caBundle": base64.b64encode(ca_file.read_bytes()).decode(),
        }
    return doc  # type: ignore[no-any-return]


def scheduler_configuration(
    extender_url: str, ca_file: Path | None = None, client_cert: CertPair | None = None
) -> dict[str, Any]:
    """The shipped deploy/kubernetes/scheduler-config.yaml, pointed at the local extender: over
    HTTPS trusting `ca_file` and presenting `client_cert` where the shipped file has them, in
    plaintext without a CA."""
    doc = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "scheduler-config.yaml").read_text())
    for ext in doc["extenders"]:
        ext["urlPrefix"] = extender_url
        if ca_file is None:
            ext["enableHTTPS"] = False
            ext.pop("tlsConfig", None)
            continue
        tls = ext["tlsConfig"]
        tls["caFile"] = str(ca_file)
        if client_cert is not None:
            tls["certFile"], tls["keyFile"] = str(client_cert.cert), str(client_cert.key)
        else:
            tls.pop("certFile", None)
            tls.pop("keyFile", None)
    return doc  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def cluster(
    control_plane: ControlPlane, api: client.ApiClient, pdp_stack: EmbeddedPDP, pki: dict[str, Path]
) -> Iterator[Enforcement]:
    core = client.CoreV1Api(api)
    for name in NODES:
        core.create_node(node_object(name))
        core.patch_node_status(name, NODE_STATUS)
    for ns, tenant in TENANT_NAMESPACES.items():
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels={"gpupaas.io/tenant": tenant}))
        )
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="unowned")))
    scheduling = client.SchedulingV1Api(api)
    # The tier catalog as onboarding applies it (same immutable value and preemptionPolicy).
    for priority_class in tier_catalog():
        scheduling.create_priority_class(priority_class)

    enforcement = Enforcement(pdp_stack, api, pki, control_plane)
    client.AdmissionregistrationV1Api(api).create_validating_webhook_configuration(
        webhook_configuration(enforcement.webhook.url, pki["ca"])
    )
    control_plane.start_scheduler(enforcement.scheduler_config())
    try:
        yield enforcement
    finally:
        enforcement.stop()

"""End to end through a real kube-apiserver and kube-scheduler: pods are created with the official
kubernetes client; the API server calls the PDP's admission webhook, the scheduler calls its
extender, and OPA decides. Needs scripts/build-kube's binaries (built on first use, then cached)."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from pdp.embedded import EmbeddedPDP
from pdp.net.certs import make_ca
from pdp.net.clientauth import ClientAuth
from pdp.substrate.kubernetes.enforcement.webhook import AdmissionWebhook, WebhookServer
from tests.e2e.conftest import (
    NODE_STATUS,
    NODES,
    Enforcement,
    node_object,
    scheduler_configuration,
    webhook_configuration,
)
from tests.e2e.controlplane import ControlPlane, apiserver_metrics

_names = itertools.count()


def gpu_pod(
    namespace: str,
    *,
    resource: str = "nvidia.com/gpu",
    gpus: int = 1,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, str]] | None = None,
    priority_class: str | None = None,
) -> dict[str, Any]:
    limits = {resource: str(gpus)} if gpus else {}
    spec: dict[str, Any] = {
        "containers": [
            {"name": "main", "image": "registry.invalid/model:1", "resources": {"limits": limits}}
        ],
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    if priority_class:
        spec["priorityClassName"] = priority_class
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"p{next(_names)}", "namespace": namespace},
        "spec": spec,
    }


def own_pool(tenant: str) -> list[dict[str, str]]:
    return [{"key": "gpupaas.io/dedicated", "operator": "Equal", "value": tenant, "effect": "NoSchedule"}]


def create(api: client.ApiClient, pod: dict[str, Any]) -> client.V1Pod:
    return client.CoreV1Api(api).create_namespaced_pod(pod["metadata"]["namespace"], pod)


def rejection(api: client.ApiClient, pod: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as raised:
        create(api, pod)
    assert raised.value.status in (400, 403, 500), raised.value
    return str(raised.value.body)


def bound_node(api: client.ApiClient, namespace: str, name: str, timeout: float = 60) -> str:
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod(name, namespace)
        if pod.spec.node_name:
            return str(pod.spec.node_name)
        time.sleep(0.2)
    conditions = [(c.type, c.reason, c.message) for c in (pod.status.conditions or [])]
    raise AssertionError(f"{namespace}/{name} was not scheduled: {conditions}")


@pytest.fixture(scope="module")
def ready(cluster: Enforcement, api: client.ApiClient) -> Enforcement:
    """Wait until the API server has picked up the webhook configuration."""
    deadline = time.monotonic() + 60
    probe = gpu_pod("acme-prod", node_selector={"topology.kubernetes.io/region": "us-east-1"})
    while True:
        probe["metadata"]["name"] = f"probe{next(_names)}"
        try:
            create(api, probe)
        except ApiException as exc:
            if "RESIDENCY_VIOLATION" in str(exc.body):
                return cluster
        assert time.monotonic() < deadline, "the webhook never took effect"
        time.sleep(0.5)


def test_eu_only_pod_pinned_to_a_us_node_is_rejected_with_the_residency_reason(
    ready: Enforcement, api: client.ApiClient, pdp_stack: EmbeddedPDP
) -> None:
    body = rejection(
        api,
        gpu_pod(
            "acme-prod",
            node_selector={"topology.kubernetes.io/region": "us-east-1"},
            tolerations=own_pool("acme-eu"),
        ),
    )
    assert "RESIDENCY_VIOLATION" in body and "acme-eu" in body
    assert pdp_stack.bundle is not None and pdp_stack.bundle.revision in body


def test_pod_naming_a_us_node_itself_is_rejected(ready: Enforcement, api: client.ApiClient) -> None:
    # spec.nodeName skips the scheduler (and the extender); the webhook judges the named node.
    pod = gpu_pod("acme-prod", tolerations=own_pool("acme-eu"))
    pod["spec"]["nodeName"] = "us-shared-1"
    body = rejection(api, pod)
    assert "RESIDENCY_VIOLATION" in body and "us-shared-1" in body
    pod = gpu_pod("globex-ml")
    pod["spec"]["nodeName"] = "eu-acme-1"
    assert "ISOLATION_FOREIGN_POOL" in rejection(api, pod)


def test_gpu_deployment_template_is_checked_too(ready: Enforcement, api: client.ApiClient) -> None:
    pod = gpu_pod("acme-prod", node_selector={"topology.kubernetes.io/region": "us-east-1"})
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "llama", "namespace": "acme-prod"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "llama"}},
            "template": {"metadata": {"labels": {"app": "llama"}}, "spec": pod["spec"]},
        },
    }
    with pytest.raises(ApiException) as raised:
        client.AppsV1Api(api).create_namespaced_deployment("acme-prod", deployment)
    assert "RESIDENCY_VIOLATION" in str(raised.value.body)


def test_shared_gpus_for_a_tenant_without_sharing_are_rejected(
    ready: Enforcement, api: client.ApiClient
) -> None:
    body = rejection(
        api, gpu_pod("acme-prod", resource="nvidia.com/gpu.shared", tolerations=own_pool("acme-eu"))
    )
    assert "SHARING_NOT_ALLOWED" in body


def test_spot_tenant_with_the_enterprise_priority_class_is_rejected(
    ready: Enforcement, api: client.ApiClient
) -> None:
    body = rejection(
        api, gpu_pod("initech-batch", resource="nvidia.com/gpu", priority_class="gpupaas-enterprise")
    )
    assert "PRIORITY_CLASS_ABOVE_TIER" in body and "initech-spot" in body


def test_toleration_for_another_tenants_pool_is_rejected(ready: Enforcement, api: client.ApiClient) -> None:
    body = rejection(api, gpu_pod("globex-ml", tolerations=own_pool("acme-eu")))
    assert "ISOLATION_FOREIGN_POOL" in body


def test_gpu_pod_in_a_namespace_no_tenant_owns_is_rejected(ready: Enforcement, api: client.ApiClient) -> None:
    assert "TENANT_UNKNOWN" in rejection(api, gpu_pod("unowned"))


def webhook_calls(api: client.ApiClient) -> dict[str, float]:
    """How many times kube-apiserver has called each of the project's webhooks (its own metric)."""
    from prometheus_client.parser import text_string_to_metric_families

    calls: dict[str, float] = {}
    for family in text_string_to_metric_families(apiserver_metrics(api)):
        for sample in family.samples:
            if sample.name == "apiserver_admission_webhook_admission_duration_seconds_count":
                name = sample.labels["name"].removesuffix(".pdp.gpupaas.io")
                calls[name] = calls.get(name, 0) + sample.value
    return calls


def test_each_workload_is_reviewed_by_one_webhook(ready: Enforcement, api: client.ApiClient) -> None:
    """A GPU pod that also reaches for a constraint was reviewed twice, by gpu.workloads and by
    constraints.workloads (or dedicated.workloads outside tenant namespaces): two calls, two
    decisions, the same answer. Each object now has one webhook."""

    def reviews(pod: dict[str, Any]) -> dict[str, float]:
        before = webhook_calls(api)
        with contextlib.suppress(ApiException):
            create(api, pod)
        after = webhook_calls(api)
        return {
            name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)
        }

    pinned_us = {"topology.kubernetes.io/region": "us-east-1"}
    assert reviews(gpu_pod("acme-prod", node_selector=pinned_us)) == {"gpu.workloads": 1}
    assert reviews(gpu_pod("acme-prod", gpus=0, node_selector=pinned_us)) == {"constraints.workloads": 1}
    dedicated = [{"key": "gpupaas.io/dedicated", "operator": "Exists", "effect": "NoSchedule"}]
    assert reviews(gpu_pod("default", tolerations=dedicated)) == {"gpu.workloads": 1}
    assert reviews(gpu_pod("default", gpus=0, tolerations=dedicated)) == {"dedicated.workloads": 1}


# ---- paths around the policy (issue 10): each was admitted by the real API server before ----


def test_a_non_gpu_pod_in_default_reaching_a_dedicated_pool_is_refused(
    ready: Enforcement, api: client.ApiClient
) -> None:
    # Before, the webhook only saw tenant namespaces (and GPU pods), and the extender only GPU pods:
    # this pod was admitted and bound to a node of acme's dedicated pool.
    sneaky = gpu_pod(
        "default",
        gpus=0,
        node_selector={"gpupaas.io/pool": "acme-h100-dedicated"},
        tolerations=[{"key": "gpupaas.io/dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    )
    body = rejection(api, sneaky)
    assert "ISOLATION_FOREIGN_POOL" in body and 'namespace \\"default\\" belongs to no tenant' in body
    # a Deployment's template the same
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sneaky", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "sneaky"}},
            "template": {"metadata": {"labels": {"app": "sneaky"}}, "spec": sneaky["spec"]},
        },
    }
    with pytest.raises(ApiException) as raised:
        client.AppsV1Api(api).create_namespaced_deployment("default", deployment)
    assert "ISOLATION_FOREIGN_POOL" in str(raised.value.body)


def test_a_non_gpu_pod_naming_a_dedicated_node_is_refused(ready: Enforcement, api: client.ApiClient) -> None:
    named = gpu_pod("default", gpus=0)
    named["spec"]["nodeName"] = "eu-acme-1"
    assert "ISOLATION_FOREIGN_POOL" in rejection(api, named)
    # the DaemonSet controller's way: matchFields on the node's name
    fields = gpu_pod("unowned", gpus=0)
    fields["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["eu-acme-2"]}]}
                ]
            }
        }
    }
    assert "ISOLATION_FOREIGN_POOL" in rejection(api, fields)
    # a shared node is nobody's: admitted
    shared = gpu_pod("default", gpus=0)
    shared["spec"]["nodeName"] = "us-shared-2"
    assert create(api, shared).metadata.name


def test_a_pending_pod_that_gains_a_dedicated_toleration_is_refused(
    ready: Enforcement, api: client.ApiClient
) -> None:
    # Kubernetes lets an update add tolerations to a pod; with pods checked on CREATE only, a gated
    # pod admitted without them could gain them and then be scheduled onto a dedicated node.
    pod = gpu_pod("default", gpus=0)
    pod["spec"]["schedulingGates"] = [{"name": "example.com/hold"}]
    name = create(api, pod).metadata.name
    patch = {
        "spec": {
            "tolerations": [{"key": "gpupaas.io/dedicated", "operator": "Exists", "effect": "NoSchedule"}]
        }
    }
    with pytest.raises(ApiException) as raised:
        client.CoreV1Api(api).patch_namespaced_pod(name, "default", patch)
    assert "ISOLATION_FOREIGN_POOL" in str(raised.value.body)
    # an update that leaves the placement alone (a label) never calls the webhook
    client.CoreV1Api(api).patch_namespaced_pod(name, "default", {"metadata": {"labels": {"x": "y"}}})


@pytest.fixture(autouse=True)
def no_pods_left(api: client.ApiClient) -> Iterator[None]:
    """Each test's pods go with it: what a tenant holds counts against its entitlement of each GPU
    class at placement, so pods left by one test would refuse the next one's."""
    yield
    core = client.CoreV1Api(api)
    for namespace in ("acme-prod", "globex-ml"):
        core.delete_collection_namespaced_pod(namespace, grace_period_seconds=0)


@pytest.fixture()
def without_cluster_view(ready: Enforcement) -> Iterator[Enforcement]:
    """The same webhook, judging from the bundle's fleet data alone (no kubeconfig)."""
    view, ready.webhook.webhook.cluster = ready.webhook.webhook.cluster, None
    try:
        yield ready
    finally:
        ready.webhook.webhook.cluster = view


def test_eu_pods_naming_us_nodes_are_refused_without_a_cluster_view(
    without_cluster_view: Enforcement, api: client.ApiClient
) -> None:
    by_hostname = gpu_pod(
        "acme-prod", node_selector={"kubernetes.io/hostname": "us-shared-1"}, tolerations=own_pool("acme-eu")
    )
    body = rejection(api, by_hostname)
    assert "RESIDENCY_VIOLATION" in body and "us-shared-1" in body and "fleet data" in body
    by_name = gpu_pod("acme-prod", tolerations=own_pool("acme-eu"))
    by_name["spec"]["nodeName"] = "us-shared-2"
    assert "RESIDENCY_VIOLATION" in rejection(api, by_name)


def test_not_in_region_affinity_admitting_us_is_refused(ready: Enforcement, api: client.ApiClient) -> None:
    pod = gpu_pod("acme-prod", tolerations=own_pool("acme-eu"))
    pod["spec"]["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "topology.kubernetes.io/region",
                                "operator": "NotIn",
                                "values": ["eu-west-1"],
                            }
                        ]
                    }
                ]
            }
        }
    }
    body = rejection(api, pod)
    assert "RESIDENCY_VIOLATION" in body and "us-east-1" in body


def test_a_pool_selector_naming_another_tenants_dedicated_pool_is_refused(
    ready: Enforcement, api: client.ApiClient
) -> None:
    body = rejection(api, gpu_pod("globex-ml", node_selector={"gpupaas.io/pool": "acme-h100-dedicated"}))
    assert "ISOLATION_FOREIGN_POOL" in body and "acme-h100-dedicated" in body


def dra_pod(namespace: str, **kw: Any) -> dict[str, Any]:
    pod = gpu_pod(namespace, gpus=0, **kw)
    pod["spec"]["resourceClaims"] = [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}]
    pod["spec"]["containers"][0]["resources"] = {"claims": [{"name": "gpu"}]}
    return pod


def test_pods_claiming_devices_through_dra_are_decided(ready: Enforcement, api: client.ApiClient) -> None:
    # No extended resource, so before neither the GPU webhook nor the extender saw them.
    assert "TENANT_UNKNOWN" in rejection(api, dra_pod("unowned"))
    body = rejection(api, dra_pod("initech-batch"))
    assert "RESIDENCY_UNCONSTRAINED" in body and "resourceClaims [gpu]" in body
    pinned = dra_pod("initech-batch", node_selector={"topology.kubernetes.io/region": "us-east-1"})
    assert create(api, pinned).metadata.name


def claim_template(namespace: str, device_class: str, count: int) -> dict[str, Any]:
    request = {"name": "gpus", "exactly": {"deviceClassName": device_class, "count": count}}
    return {
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": f"t{next(_names)}", "namespace": namespace},
        "spec": {"spec": {"devices": {"requests": [request]}}},
    }


def test_claim_templates_of_a_gpu_device_class_are_decided(ready: Enforcement, api: client.ApiClient) -> None:
    resource = client.ResourceV1Api(api)

    def refused(doc: dict[str, Any]) -> str:
        with pytest.raises(ApiException) as raised:
            resource.create_namespaced_resource_claim_template(doc["metadata"]["namespace"], doc)
        return str(raised.value.body)

    assert "TENANT_UNKNOWN" in refused(claim_template("unowned", "gpu.nvidia.com", 1))
    assert "ENTITLEMENT_EXCEEDED" in refused(claim_template("acme-prod", "gpu.nvidia.com", 8))
    assert "SHARING_NOT_ALLOWED" in refused(claim_template("acme-prod", "mig.nvidia.com", 1))
    for namespace, device_class in (("acme-prod", "gpu.nvidia.com"), ("unowned", "nic.example.com")):
        doc = claim_template(namespace, device_class, 2)
        assert resource.create_namespaced_resource_claim_template(namespace, doc).metadata.name


def test_dedicated_tenant_pods_land_only_on_its_own_pool(ready: Enforcement, api: client.ApiClient) -> None:
    pods = [create(api, gpu_pod("acme-prod", tolerations=own_pool("acme-eu"))) for _ in range(3)]
    nodes = {bound_node(api, "acme-prod", p.metadata.name) for p in pods}
    assert nodes <= {"eu-acme-1", "eu-acme-2"}, nodes


def test_standard_tenant_pods_never_land_on_another_tenants_dedicated_nodes(
    ready: Enforcement, api: client.ApiClient
) -> None:
    # A dedicated node whose taint is missing: only the extender keeps other tenants off it.
    core = client.CoreV1Api(api)
    NODES["eu-acme-3"] = ("eu-west-1", "NVIDIA-H100-80GB-HBM3", "acme-h100-dedicated", "acme-eu", "none")
    core.create_node(node_object("eu-acme-3", taint_dedicated=False))
    core.patch_node_status("eu-acme-3", NODE_STATUS)
    pods = [create(api, gpu_pod("globex-ml")) for _ in range(6)]
    nodes = {bound_node(api, "globex-ml", p.metadata.name) for p in pods}
    assert nodes and not any(n.startswith("eu-acme") for n in nodes), nodes
    # globex may share GPUs and holds A100s, so the time-slicing spot node is fair game too.
    assert nodes <= {"eu-shared-1", "eu-shared-2", "us-shared-1", "us-shared-2", "us-spot-1"}, nodes


def test_a_scheduler_sending_whole_nodes_gets_its_own_nodes_back(
    ready: Enforcement, api: client.ApiClient, control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nodeCacheCapable: false: kube-scheduler sends every candidate Node object (status and all,
    # as Go encodes them) and reads the passing ones back; the extender sends their own text.
    extender = ready.extender.extender
    sent_whole: list[int] = []
    cut: list[bool] = []
    read = extender._read

    def recording(body: bytes) -> Any:
        candidates = read(body)
        if candidates.objects is not None:
            sent_whole.append(len(candidates.objects))
            # Read on the label keys the policy reads (known once it has decided), not whole labels.
            cut.append(candidates.cut_to is not None)
        return candidates

    monkeypatch.setattr(extender, "_read", recording)
    monkeypatch.setattr(extender, "_cut_from", 0)  # this cluster's few labels are short
    config = ready.scheduler_config()
    config["profiles"] = [{"schedulerName": "gpupaas-whole-nodes"}]
    for stanza in config["extenders"]:
        stanza["nodeCacheCapable"] = False
    control_plane.start_scheduler(config, name="kube-scheduler-whole-nodes")
    pods = []
    for _ in range(3):
        pod = gpu_pod("acme-prod", tolerations=own_pool("acme-eu"))
        pod["spec"]["schedulerName"] = "gpupaas-whole-nodes"
        pods.append(create(api, pod))
    nodes = {bound_node(api, "acme-prod", p.metadata.name) for p in pods}
    own = {name for name, facts in NODES.items() if facts[3] == "acme-eu"}
    assert nodes and nodes <= own, nodes
    assert sent_whole and all(sent_whole), sent_whole  # Node objects, not names
    assert any(cut), cut


# Who may call the webhook and the extender ------------------------------------------------------
class CountingWebhook(AdmissionWebhook):
    def __init__(self, stack: EmbeddedPDP) -> None:
        super().__init__(stack.point)
        self.reviews = 0

    def review(
        self, body: bytes, timeout: float | None = None, *, arrived: float | None = None, caller: str = ""
    ) -> Any:
        self.reviews += 1
        return super().review(body, timeout, arrived=arrived, caller=caller)


def _plain_pod_outcome(api: client.ApiClient, namespace: str) -> str | None:
    """None if a pod the PDP's own webhooks leave alone is admitted, else the rejection."""
    try:
        create(api, gpu_pod(namespace, gpus=0))
    except ApiException as exc:
        return str(exc.body)
    return None


@pytest.mark.parametrize(
    ("case", "answered"),
    [("the-api-servers-certificate", True), ("another-ca", False), ("another-name", False)],
)
def test_the_webhook_answers_only_the_api_servers_client_certificate(
    ready: Enforcement,
    api: client.ApiClient,
    control_plane: ControlPlane,
    pdp_stack: EmbeddedPDP,
    pki: dict[str, Path],
    tmp_path: Path,
    case: str,
    answered: bool,
) -> None:
    # kube-apiserver presents the client certificate of its admission configuration's kubeconfig
    # (deploy/kubernetes/control-plane/). A webhook trusting another CA, or the right CA for
    # another name, refuses the handshake: the call fails and failurePolicy Fail rejects the pod.
    assert control_plane.webhook_clients_ca is not None
    ca = {"another-ca": make_ca(tmp_path / "other", "e2e-webhook-client-ca")}.get(
        case, control_plane.webhook_clients_ca
    )
    names = frozenset({"kube-controller-manager" if case == "another-name" else "kube-apiserver"})
    webhook = CountingWebhook(pdp_stack)
    name = f"mtls-{case}"
    core = client.CoreV1Api(api)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"e2e-mtls": case}))
    )
    admission = client.AdmissionregistrationV1Api(api)
    with WebhookServer(
        webhook, cert_file=pki["cert"], key_file=pki["key"], client_auth=ClientAuth(ca.cert, names)
    ) as server:
        config = webhook_configuration(server.url, pki["ca"])
        config["metadata"]["name"] = name
        (hook,) = (h for h in config["webhooks"] if h["name"] == "gpu.workloads.pdp.gpupaas.io")
        hook.pop("matchConditions")
        hook["namespaceSelector"] = {"matchLabels": {"e2e-mtls": case}}
        config["webhooks"] = [hook]
        admission.create_validating_webhook_configuration(config)
        try:
            deadline = time.monotonic() + 60
            while True:  # until the API server calls the webhook (its configuration is cached)
                outcome = _plain_pod_outcome(api, name)
                if webhook.reviews or outcome is not None:
                    break
                assert time.monotonic() < deadline, "the API server never called the webhook"
                time.sleep(0.5)
            if answered:
                assert outcome is None and webhook.reviews > 0
            else:
                assert outcome is not None and "failed calling webhook" in outcome, outcome
                assert webhook.reviews == 0
        finally:
            admission.delete_validating_webhook_configuration(name)


def test_the_extender_answers_only_the_schedulers_client_certificate(
    ready: Enforcement, api: client.ApiClient, control_plane: ControlPlane
) -> None:
    # The cluster's kube-scheduler places pods through the extender with its client certificate
    # (every placement test here); a scheduler presenting another component's certificate is
    # refused at the handshake, and with ignorable: false its GPU pods are not placed.
    assert control_plane.apiserver_client is not None
    config = scheduler_configuration(ready.extender.url, ready.pki["ca"], control_plane.apiserver_client)
    config["profiles"] = [{"schedulerName": "gpupaas-wrong-client"}]
    control_plane.start_scheduler(config, name="kube-scheduler-wrong-client")
    placed = create(api, gpu_pod("acme-prod", tolerations=own_pool("acme-eu"))).metadata.name
    assert bound_node(api, "acme-prod", placed) in {n for n, facts in NODES.items() if facts[3] == "acme-eu"}
    pod = gpu_pod("acme-prod", tolerations=own_pool("acme-eu"))
    pod["spec"]["schedulerName"] = "gpupaas-wrong-client"
    name = create(api, pod).metadata.name
    core = client.CoreV1Api(api)
    deadline = time.monotonic() + 60
    message = ""
    try:
        # kube-scheduler's own words: `Post "https://…/filter": … connection reset by peer`.
        while f"{ready.extender.url}/filter" not in message:
            assert time.monotonic() < deadline, f"no scheduling failure calling the extender: {message!r}"
            time.sleep(0.5)
            read = core.read_namespaced_pod(name, "acme-prod")
            assert not read.spec.node_name, "placed without the extender's answer"
            conditions = read.status.conditions or ()
            message = " ".join(c.message or "" for c in conditions if c.type == "PodScheduled")
    finally:
        core.delete_namespaced_pod(name, "acme-prod", grace_period_seconds=0)


def test_with_the_pdp_stopped_gpu_pods_are_refused_and_other_pods_pass(
    ready: Enforcement, api: client.ApiClient
) -> None:
    gated = gpu_pod("globex-ml")
    gated["spec"]["schedulingGates"] = [{"name": "example.com/hold"}]
    admitted = create(api, gated).metadata.name
    with ready.webhook_stopped():
        core = client.CoreV1Api(api)
        # Updates that leave a pod's placement alone never call the webhook, so they pass while the
        # PDP is down; one that adds a toleration is decided, so it is refused.
        core.patch_namespaced_pod(admitted, "globex-ml", {"metadata": {"labels": {"team": "ml"}}})
        toleration = {"spec": {"tolerations": [{"key": "example.com/spot", "operator": "Exists"}]}}
        with pytest.raises(ApiException) as raised:
            core.patch_namespaced_pod(admitted, "globex-ml", toleration)
        assert "failed calling webhook" in str(raised.value.body)
        body = rejection(api, gpu_pod("globex-ml"))
        assert "failed calling webhook" in body and "gpu.workloads.pdp.gpupaas.io" in body
        plain = create(api, gpu_pod("globex-ml", gpus=0))
        assert plain.metadata.name
        other = create(api, gpu_pod("unowned", gpus=0, node_selector={"kubernetes.io/os": "linux"}))
        assert other.metadata.name
        # Tolerating every taint reaches the dedicated pools: decided by the policy, so refused while
        # the PDP is down, in namespaces no tenant owns too (only the system allow-list is exempt).
        body = rejection(api, gpu_pod("unowned", gpus=0, tolerations=[{"operator": "Exists"}]))
        assert "failed calling webhook" in body and "dedicated.workloads.pdp.gpupaas.io" in body
        system = create(api, gpu_pod("kube-system", gpus=0, tolerations=[{"operator": "Exists"}]))
        assert system.metadata.name

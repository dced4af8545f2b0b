"""The chart's rendered manifests applied to a real kube-apiserver (server-side apply, as
`helm install`/`upgrade` would create them): with default values, then upgraded with non-default
ones; the API server validates every object (schemas, the webhooks' CEL match conditions). A
rendering the API server refuses fails here, so the check is real."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config, dynamic
from kubernetes.client.exceptions import ApiException

from pdp.substrate.gateway.routes import GATEWAY_API, OBJECTIVE_API, POOL_API
from pdp.substrate.kubernetes.resources import RESOURCES
from pdp.substrate.kueue.objects import RESOURCES as KUEUE_RESOURCES
from tests.e2e.controlplane import ControlPlane, kube_binaries
from tests.helm import key, template


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dynamic.DynamicClient]:
    # Its own API server: the chart's webhook configuration (failurePolicy Fail, no PDP behind it)
    # must not reach the session's other tests.
    cp = ControlPlane(kube_binaries(), tmp_path_factory.mktemp("helm-kube")).start()
    api = config.new_client_from_config(str(cp.kubeconfig))
    try:
        yield dynamic.DynamicClient(api)
    finally:
        api.close()
        cp.stop()


def _apply(dyn: dynamic.DynamicClient, obj: dict[str, Any]) -> Any:
    resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    return resource.server_side_apply(
        body=obj,
        name=obj["metadata"]["name"],
        namespace=obj["metadata"].get("namespace"),
        field_manager="helm-e2e",
        force_conflicts=True,
    )


def _install(dyn: dynamic.DynamicClient, objs: list[dict[str, Any]]) -> None:
    # Namespaces first, as helm orders them.
    for obj in sorted(objs, key=lambda o: o["kind"] != "Namespace"):
        try:
            _apply(dyn, obj)
        except ApiException as exc:
            raise AssertionError(f"{key(obj)} refused: {exc.body}") from exc


def test_default_then_non_default_values_are_accepted(cluster: dynamic.DynamicClient) -> None:
    default = template()
    _install(cluster, default)
    for obj in default:
        resource = cluster.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        stored = resource.get(name=obj["metadata"]["name"], namespace=obj["metadata"].get("namespace"))
        assert stored.metadata.name == obj["metadata"]["name"]
    hooks = cluster.resources.get(
        api_version="admissionregistration.k8s.io/v1", kind="ValidatingWebhookConfiguration"
    )
    assert {w.failurePolicy for w in hooks.get(name="gpupaas-pdp").webhooks} == {"Fail"}

    upgraded = template(
        "namespace=platform",
        "pdp.replicas=5",
        "webhook.failurePolicy=Ignore",
        "lifecycle.databaseURLSecret=lifecycle-db",
        "lifecycle.stateClaim=lifecycle-state",
        "lifecycle.checkpointsClaim=lifecycle-checkpoints",
        "policy.opaConfig=services: {}",
        "gateway.domain=models.example.com",
    )
    _install(cluster, upgraded)
    assert {w.failurePolicy for w in hooks.get(name="gpupaas-pdp").webhooks} == {"Ignore"}
    pdp = cluster.resources.get(api_version="apps/v1", kind="Deployment").get(
        name="pdp", namespace="platform"
    )
    assert pdp.spec.replicas == 5


# The API group of every kind the lifecycle's adapter applies (pdp/substrate/kubernetes/adapter.py).
GROUPS = {
    "Namespace": "",
    "ResourceQuota": "",
    "LimitRange": "",
    "Node": "",
    "ConfigMap": "",
    "Service": "",
    "PriorityClass": "scheduling.k8s.io",
    "NetworkPolicy": "networking.k8s.io",
    "RoleBinding": "rbac.authorization.k8s.io",
    "Deployment": "apps",
    "Gateway": GATEWAY_API,
    "HTTPRoute": GATEWAY_API,
    "InferencePool": POOL_API,
    "InferenceObjective": OBJECTIVE_API,
    **dict.fromkeys(KUEUE_RESOURCES, "kueue.x-k8s.io"),
}
LIFECYCLE = "system:serviceaccount:gpupaas-system:gpupaas-lifecycle"


def _allowed(api: client.ApiClient, verb: str, group: str, resource: str) -> bool:
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": LIFECYCLE,
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": "t1"},
            },
        }
    )
    return bool(review.status.allowed)


def test_the_lifecycle_role_covers_what_its_adapter_applies_and_no_more(
    cluster: dynamic.DynamicClient,
) -> None:
    """The worker applies (server-side apply is a patch) every kind of the adapter's table and
    deletes what offboarding deletes; it may not touch Secrets or delete nodes."""
    _install(cluster, template())
    api = cluster.client
    assert set(GROUPS) >= set(RESOURCES), f"no API group known for {set(RESOURCES) - set(GROUPS)}"
    missing = [
        f"{verb} {kind}"
        for kind, (plural, _) in RESOURCES.items()
        if kind != "Gateway"  # the platform operator's object, not the lifecycle's
        for verb in ("get", "patch") + (("delete",) if kind != "Node" else ())
        if not _allowed(api, verb, GROUPS[kind], plural)
    ]
    assert not missing, missing
    assert not _allowed(api, "delete", "", "nodes")
    assert not _allowed(api, "get", "", "secrets")
    assert not _allowed(api, "patch", GATEWAY_API, "gateways")


def test_a_rendering_the_api_server_refuses_fails(cluster: dynamic.DynamicClient) -> None:
    policies = [
        o for o in template("networkPolicy.controlPlaneCIDR=300.0.0.0/8") if o["kind"] == "NetworkPolicy"
    ]
    cluster.resources.get(api_version="v1", kind="Namespace").server_side_apply(
        body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gpupaas-system"}},
        name="gpupaas-system",
        field_manager="helm-e2e",
    )
    with pytest.raises(AssertionError, match=r"NetworkPolicy/gpupaas-system/pdp refused: .*300.0.0.0/8"):
        _install(cluster, policies)

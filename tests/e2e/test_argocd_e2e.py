"""The Argo CD example (deploy/argocd) against Argo CD v3.5.4's own Application CRD (from its Go
module, scripts/fetch-argocd-crds) in a real kube-apiserver: both Applications are created with
strict field validation, so the CRD's schema checks every field and an unknown one is refused;
broken Applications are refused, so the check can fail. The policy kustomization's objects (the
generated ConfigMaps, emulated here as kustomize generates them, and the rollout hook) are accepted
too, and the hook's service account may restart the bundle server and nothing else."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, dynamic
from kubernetes.client.exceptions import ApiException

from tests.argocd import CHART_APP, CHART_OCI_APP, POLICY, POLICY_APP, application_crd, load, policy_objects
from tests.deploy.test_argocd import _generators
from tests.e2e.crds import create_crds

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "applications"
HOOK_USER = "system:serviceaccount:gpupaas-system:gpupaas-policy-rollout"


def _ensure_namespace(core: client.CoreV1Api, name: str) -> None:
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as exc:
        if exc.status != 409:
            raise


@pytest.fixture(scope="module")
def applications(api: client.ApiClient) -> Iterator[client.CustomObjectsApi]:
    create_crds(api, [application_crd()], exist_ok=True)
    core = client.CoreV1Api(api)
    for ns in ("argocd", "gpupaas-system"):
        _ensure_namespace(core, ns)
    yield client.CustomObjectsApi(api)


def _create(apps: client.CustomObjectsApi, app: dict[str, Any]) -> Any:
    return apps.create_namespaced_custom_object(
        GROUP, VERSION, app["metadata"]["namespace"], PLURAL, app, field_validation="Strict"
    )


@pytest.mark.parametrize("path", [CHART_APP, POLICY_APP, CHART_OCI_APP], ids=["chart", "policy", "chart-oci"])
def test_application_is_accepted(applications: client.CustomObjectsApi, path: Any) -> None:
    app = load(path)
    try:
        _create(applications, app)
    except ApiException as exc:
        raise AssertionError(f"{path.name} refused: {exc.body}") from exc
    namespace, name = app["metadata"]["namespace"], app["metadata"]["name"]
    try:
        stored = applications.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        assert stored["spec"] == app["spec"]
    finally:
        # gpupaas-chart.yaml and gpupaas-chart-oci.yaml are one release (the same name), two ways:
        # removed before the next, its finalizer first (no Argo CD controller here to clear it).
        applications.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"finalizers": None}}
        )
        applications.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def _broken(mutate: str) -> dict[str, Any]:
    app = copy.deepcopy(load(CHART_APP))
    app["metadata"]["name"] = f"broken-{mutate}"
    spec = app["spec"]
    if mutate == "no-destination":
        del spec["destination"]
    elif mutate == "prune-string":
        spec["syncPolicy"]["automated"]["prune"] = "yes"
    elif mutate == "misspelt-field":
        spec["syncPolicy"]["automatic"] = spec["syncPolicy"].pop("automated")
    elif mutate == "no-repo-url":
        del spec["source"]["repoURL"]
    return app


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        ("no-destination", "spec.destination"),
        ("prune-string", "spec.syncPolicy.automated.prune"),
        ("misspelt-field", "spec.syncPolicy.automatic"),  # strict decoding: 400, not the schema
        ("no-repo-url", "spec.source.repoURL"),
    ],
)
def test_broken_application_is_refused(
    applications: client.CustomObjectsApi, mutate: str, named: str
) -> None:
    with pytest.raises(ApiException) as refused:
        _create(applications, _broken(mutate))
    assert refused.value.status in (400, 422), refused.value.body
    assert named in refused.value.body


def _configmaps() -> list[dict[str, Any]]:
    """What the configMapGenerator makes: one ConfigMap per generator, one key per file."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "gpupaas-system"},
            "data": {k: path.read_text() for k, path in entries},
        }
        for name, entries in _generators().items()
    ]


def _allowed(api: client.ApiClient, verb: str, resource: str, name: str) -> bool:
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": HOOK_USER,
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "resourceAttributes": {
                    "verb": verb,
                    "group": "apps" if resource == "deployments" else "",
                    "resource": resource,
                    "name": name,
                    "namespace": "gpupaas-system",
                },
            },
        }
    )
    return bool(review.status.allowed)


def test_policy_objects_are_accepted_and_the_hook_may_only_restart_the_bundle_server(
    applications: client.CustomObjectsApi, api: client.ApiClient
) -> None:
    dyn = dynamic.DynamicClient(api)
    namespace = load(POLICY / "kustomization.yaml")["namespace"]
    for obj in [*_configmaps(), *policy_objects()]:
        obj = copy.deepcopy(obj)
        obj["metadata"]["namespace"] = namespace
        if obj["kind"] == "RoleBinding":
            for subject in obj["subjects"]:
                subject["namespace"] = namespace  # kustomize's namespace transformer sets it
        resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        try:
            resource.server_side_apply(
                body=obj,
                name=obj["metadata"]["name"],
                namespace=namespace,
                field_manager="argocd-e2e",
                force_conflicts=True,
            )
        except ApiException as exc:
            raise AssertionError(f"{obj['kind']} {obj['metadata']['name']} refused: {exc.body}") from exc
    assert _allowed(api, "patch", "deployments", "pdp-bundles")
    assert not _allowed(api, "patch", "deployments", "pdp")
    assert not _allowed(api, "get", "secrets", "bundle-signing-key")
    assert not _allowed(api, "patch", "configmaps", "pdp-tenants")

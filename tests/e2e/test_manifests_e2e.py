"""The shipped manifests are accepted by a real kube-apiserver, field by field (server-side dry run
with strict field validation): a misspelled field in a NetworkPolicy or a probe would otherwise be
dropped silently by kubectl and leave the namespace open or the check absent."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException

from tests.e2e.controlplane import ROOT

DEPLOY = ROOT / "deploy" / "kubernetes"
MANIFESTS = [
    "rbac.yaml",
    "bundle-server.yaml",
    "deployment.yaml",
    "pdb.yaml",
    "webhook.yaml",
    "networkpolicy.yaml",
]


def objects(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def dry_run_create(api: client.ApiClient, obj: dict[str, Any]) -> Any:
    (namespace,) = objects("namespace.yaml")
    try:
        client.CoreV1Api(api).create_namespace(namespace)
    except ApiException as exc:
        if exc.status != 409:  # made by an earlier test
            raise
    resource = dynamic.DynamicClient(api).resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    # Under a name of its own: the enforcement tests of the same control plane create objects of
    # these names for real (the webhook configuration), and a dry-run create of those is a 409.
    body = {**obj, "metadata": {**obj["metadata"], "name": f"{obj['metadata']['name']}-check"}}
    return resource.create(
        body=body,
        namespace=obj["metadata"].get("namespace"),
        query_params=[("dryRun", "All"), ("fieldValidation", "Strict")],
    )


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_the_api_server_accepts_every_object_strictly(api: client.ApiClient, manifest: str) -> None:
    for obj in objects(manifest):
        created = dry_run_create(api, obj)
        assert created.metadata.name == f"{obj['metadata']['name']}-check", (manifest, obj["kind"])


def test_a_misspelled_field_is_refused(api: client.ApiClient) -> None:
    policy = next(o for o in objects("networkpolicy.yaml") if o["metadata"]["name"] == "pdp")
    policy["spec"]["ingres"] = policy["spec"].pop("ingress")
    with pytest.raises(dynamic.exceptions.ApiException) as refused:
        dry_run_create(api, policy)
    status = json.loads(refused.value.body)
    assert status["code"] == 400 and 'strict decoding error: unknown field "spec.ingres"' in status["message"]

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config

from tests.e2e.controlplane import ControlPlane, kube_binaries

from .harness import Worker


@pytest.fixture(scope="module")
def worker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A lifecycle worker process (embedded PDP, DBOS, dry-run adapter, API) per test module,
    started with the module's `WORKER_OPTIONS` (Worker keyword arguments) if it has any."""
    options = getattr(request.module, "WORKER_OPTIONS", {})
    w = Worker(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]), **options).start()
    try:
        yield w
    finally:
        w.stop()


def _crd(kind: str, plural: str, scope: str) -> dict[str, Any]:
    # Test-only: just enough of Kueue's CRDs for the API server to store the objects.
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kueue.x-k8s.io"},
        "spec": {
            "group": "kueue.x-k8s.io",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "scope": scope,
            "versions": [
                {
                    "name": "v1beta1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(kube_binaries(), tmp_path_factory.mktemp("kube")).start()
    try:
        api = config.new_client_from_config(str(cp.kubeconfig))
        ext = client.ApiextensionsV1Api(api)
        for kind, plural, scope in (
            ("ClusterQueue", "clusterqueues", "Cluster"),
            ("LocalQueue", "localqueues", "Namespaced"),
        ):
            ext.create_custom_resource_definition(_crd(kind, plural, scope))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until the CRDs are served
            try:
                client.CustomObjectsApi(api).list_cluster_custom_object(
                    "kueue.x-k8s.io", "v1beta1", "clusterqueues"
                )
                client.CustomObjectsApi(api).list_cluster_custom_object(
                    "kueue.x-k8s.io", "v1beta1", "localqueues"
                )
                break
            except client.exceptions.ApiException:
                time.sleep(0.2)
        api.close()
        # Without it a deleted namespace stays Terminating for ever (nothing empties it).
        cp.start_controller_manager()
        yield cp
    finally:
        cp.stop()

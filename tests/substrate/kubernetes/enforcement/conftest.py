"""Builders and fixtures for the enforcement tests: Kubernetes objects, a counting engine that
delegates to the real OPA, and a self-signed serving certificate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from pdp.embedded import EmbeddedPDP
from pdp.point import DecisionPoint
from tests.conftest import self_signed
from tests.freeze import frozen

H100 = "NVIDIA-H100-80GB-HBM3"


class CountingEngine:
    """The real engine, counting evaluations."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        self.calls += 1
        return self.inner.evaluate(path, input_doc, timeout=timeout)


@pytest.fixture()
def counting(stack: EmbeddedPDP) -> CountingEngine:
    return CountingEngine(stack.engine)


@pytest.fixture()
def point(counting: CountingEngine) -> DecisionPoint:
    return DecisionPoint(counting)


def pod(
    name: str = "llama-0",
    *,
    namespace: str | None = None,
    uid: str | None = None,
    limits: dict[str, Any] | None = None,
    requests: dict[str, Any] | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, str]] | None = None,
    priority_class: str | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "registry.invalid/model:1"}
    resources = {k: v for k, v in (("limits", limits), ("requests", requests)) if v}
    if resources:
        container["resources"] = resources
    spec: dict[str, Any] = {"containers": [container]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    if tolerations:
        spec["tolerations"] = tolerations
    if priority_class:
        spec["priorityClassName"] = priority_class
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    if uid:
        metadata["uid"] = uid
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def review(
    obj: dict[str, Any] | None,
    namespace: str,
    *,
    uid: str = "705ab4f5-6393-11e8-b7cc-42010a800002",
    operation: str = "CREATE",
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": "", "version": "v1", "kind": (obj or {}).get("kind", "Pod")},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "alice@example.com"},
    }
    if obj is not None:
        request["object"] = obj
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def own_pool(tenant: str) -> list[dict[str, str]]:
    return [{"key": "gpupaas.io/dedicated", "operator": "Equal", "value": tenant, "effect": "NoSchedule"}]


def labels(region: str, pool: str, dedicated: str | None = None, product: str = H100) -> dict[str, str]:
    out = {
        "topology.kubernetes.io/region": region,
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.sharing-strategy": "none",
        "gpupaas.io/pool": pool,
    }
    if dedicated:
        out["gpupaas.io/dedicated-tenant"] = dedicated
    return out


def node(name: str, node_labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": node_labels},
        "status": {"allocatable": {"nvidia.com/gpu": "8"}},
    }


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@contextmanager
def opa_stopped(stack: EmbeddedPDP) -> Iterator[None]:
    """OPA alive but not answering (every thread stopped): the slow-engine case."""
    assert stack.sidecar is not None and stack.sidecar.pid is not None
    with frozen(stack.sidecar.pid):
        yield

"""What each tenant holds where (holdings.py): pure bookkeeping of the pod and namespace watches and
of the pods the extender allowed, without a server."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pdp.substrate.kubernetes.enforcement.holdings import Holdings

A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB", "kubernetes.io/hostname": "x"}
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "kubernetes.io/hostname": "y"}
NODES = {
    "a1": {**A100, "kubernetes.io/hostname": "a1"},
    "a2": {**A100, "kubernetes.io/hostname": "a2"},
    "h1": {**H100, "kubernetes.io/hostname": "h1"},
}


def labels_of(names: Iterable[str]) -> Mapping[str, Mapping[str, str]]:
    return {n: NODES[n] for n in names}


def product_only(labels: Mapping[str, str]) -> Mapping[str, str]:
    return {k: v for k, v in labels.items() if k == "nvidia.com/gpu.product"}


def a_pod(uid: str, namespace: str, node: str = "", gpus: int = 1, phase: str = "Running") -> dict[str, Any]:
    container = {"name": "m", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
    return {
        "metadata": {"uid": uid, "namespace": namespace},
        "spec": {"containers": [container], **({"nodeName": node} if node else {})},
        "status": {"phase": phase},
    }


def a_namespace(name: str, tenant: str | None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"gpupaas.io/tenant": tenant} if tenant else {}}}


def test_bound_pods_are_summed_per_node_shape_over_the_tenants_namespaces() -> None:
    h = Holdings()
    h.replace_namespaces(
        [a_namespace("acme-a", "acme"), a_namespace("acme-b", "acme"), a_namespace("x", "other")]
    )
    h.replace_pods(
        [
            a_pod("p1", "acme-a", "a1", 2),
            a_pod("p2", "acme-b", "a2", 3),  # another A100 node: the same shape once projected
            a_pod("p3", "acme-b", "h1", 1),
            a_pod("p4", "x", "a1", 4),  # another tenant
            a_pod("p5", "acme-a", "", 8),  # not bound: counts nowhere
            a_pod("p6", "acme-a", "a1", 5, phase="Succeeded"),  # finished: holds nothing
        ]
    )
    held = h.held("acme-a", "", labels_of, product_only)
    assert sorted(held, key=str) == sorted(
        [
            {"resources": {"nvidia.com/gpu": 5}, "on": [product_only(A100)]},
            {"resources": {"nvidia.com/gpu": 1}, "on": [product_only(H100)]},
        ],
        key=str,
    )
    # unprojected, each node is its own shape; the pod asked about is not counted
    assert {
        (e["on"][0]["kubernetes.io/hostname"], e["resources"]["nvidia.com/gpu"])
        for e in h.held("acme-b", "p1", labels_of)
    } == {("a2", 3), ("h1", 1)}


def test_an_unlabelled_namespace_counts_alone_and_a_relabel_moves_it() -> None:
    h = Holdings()
    h.replace_namespaces([a_namespace("lone", None), a_namespace("acme-a", "acme")])
    h.replace_pods([a_pod("p1", "lone", "a1", 2), a_pod("p2", "acme-a", "a1", 1)])
    assert [e["resources"] for e in h.held("lone", "", labels_of, product_only)] == [{"nvidia.com/gpu": 2}]
    h.apply_namespace("MODIFIED", a_namespace("lone", "acme"))
    assert [e["resources"] for e in h.held("acme-a", "", labels_of, product_only)] == [{"nvidia.com/gpu": 3}]
    h.apply_namespace("DELETED", a_namespace("lone", "acme"))
    assert [e["resources"] for e in h.held("acme-a", "", labels_of, product_only)] == [{"nvidia.com/gpu": 1}]


def test_an_allowed_pod_counts_on_every_shape_it_was_allowed_until_its_binding_shows() -> None:
    now = [100.0]
    h = Holdings(assume_seconds=10, clock=lambda: now[0])
    h.allow("p1", "acme", {"nvidia.com/gpu": 2}, [product_only(A100), product_only(A100), product_only(H100)])
    held = h.held("acme", "", labels_of, product_only)
    assert held == [{"resources": {"nvidia.com/gpu": 2}, "on": [product_only(A100), product_only(H100)]}]
    assert h.held("acme", "p1", labels_of, product_only) == []  # asked about itself again: not counted
    h.apply_pod("MODIFIED", a_pod("p1", "acme", "h1", 2))  # bound: counts on its node only
    assert h.held("acme", "", labels_of, product_only) == [
        {"resources": {"nvidia.com/gpu": 2}, "on": [product_only(H100)]}
    ]
    h.allow("p1", "acme", {"nvidia.com/gpu": 2}, [product_only(A100)])  # a stale allow of a bound pod
    assert len(h.held("acme", "", labels_of, product_only)) == 1


def test_an_allowed_pod_is_forgotten_when_deleted_finished_or_expired() -> None:
    now = [0.0]
    h = Holdings(assume_seconds=10, clock=lambda: now[0])
    for uid in ("gone", "done", "late"):
        h.allow(uid, "acme", {"nvidia.com/gpu": 1}, [product_only(A100)])
    h.apply_pod("DELETED", a_pod("gone", "acme"))
    h.apply_pod("MODIFIED", a_pod("done", "acme", phase="Failed"))
    assert len(h.held("acme", "", labels_of, product_only)) == 1
    now[0] = 10.0
    assert h.held("acme", "", labels_of, product_only) == []

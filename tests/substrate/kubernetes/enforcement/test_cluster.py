"""The cluster cache's bookkeeping: node labels and node occupancy from watch events (pure)."""

from __future__ import annotations

from typing import Any

from pdp.substrate.kubernetes.enforcement.cluster import (
    NodeIndex,
    PodIndex,
    apply_node_event,
    apply_pod_event,
)


def pod(uid: str, namespace: str, node: str | None = None, phase: str = "Running") -> dict[str, Any]:
    spec = {"nodeName": node} if node else {}
    return {"metadata": {"uid": uid, "namespace": namespace}, "spec": spec, "status": {"phase": phase}}


def test_nodes_are_added_changed_and_deleted() -> None:
    index = NodeIndex()
    apply_node_event(index, "ADDED", {"metadata": {"name": "n1", "labels": {"a": "1"}}})
    apply_node_event(index, "MODIFIED", {"metadata": {"name": "n1", "labels": {"a": "2"}}})
    apply_node_event(index, "ADDED", {"metadata": {"name": "n2"}})
    assert index.labels == {"n1": {"a": "2"}, "n2": {}}
    apply_node_event(index, "DELETED", {"metadata": {"name": "n1"}})
    apply_node_event(index, "BOOKMARK", {"metadata": {"resourceVersion": "9"}})
    assert index.labels == {"n2": {}}
    index.replace([{"metadata": {"name": "n3", "labels": {"b": "x"}}}])
    assert index.labels == {"n3": {"b": "x"}}


def test_only_bound_running_pods_occupy_a_node() -> None:
    index = PodIndex()
    apply_pod_event(index, "ADDED", pod("p1", "acme-prod"))  # pending, not bound
    assert index.namespaces_on("n1") == []
    apply_pod_event(index, "MODIFIED", pod("p1", "acme-prod", "n1"))  # bound
    apply_pod_event(index, "ADDED", pod("p2", "acme-prod", "n1"))
    apply_pod_event(index, "ADDED", pod("p3", "kube-system", "n1", phase="Pending"))
    assert index.namespaces_on("n1") == ["acme-prod", "acme-prod", "kube-system"]
    assert index.namespaces_on("n1", exclude_pod_uid="p2") == ["acme-prod", "kube-system"]
    apply_pod_event(index, "MODIFIED", pod("p2", "acme-prod", "n1", phase="Succeeded"))
    apply_pod_event(index, "DELETED", pod("p3", "kube-system", "n1"))
    assert index.namespaces_on("n1") == ["acme-prod"]
    apply_pod_event(index, "MODIFIED", pod("p1", "acme-prod", "n1", phase="Failed"))
    assert index.namespaces_on("n1") == [] and index.by_node == {}


def test_malformed_events_are_ignored() -> None:
    index = PodIndex()
    for event in (
        {},
        {"metadata": "x"},
        {"metadata": {"uid": 1}},
        {"metadata": {"uid": "u", "namespace": "n"}},
    ):
        apply_pod_event(index, "ADDED", event)
    apply_pod_event(index, "ADDED", {"metadata": {"uid": "u", "namespace": "n"}, "spec": [], "status": 3})
    assert index.by_node == {}


def test_replace_forgets_what_the_list_does_not_have() -> None:
    index = PodIndex()
    apply_pod_event(index, "ADDED", pod("old", "globex-ml", "n1"))
    index.replace([pod("new", "acme-prod", "n2")])
    assert index.namespaces_on("n1") == [] and index.namespaces_on("n2") == ["acme-prod"]


def test_occupants_of_many_nodes_at_once() -> None:
    index = PodIndex()
    for uid, namespace, node in [
        ("p1", "acme-prod", "n1"),
        ("p2", "globex-ml", "n1"),
        ("p3", "acme-prod", "n3"),
    ]:
        apply_pod_event(index, "ADDED", pod(uid, namespace, node))
    assert index.occupants(["n1", "n2", "n3"]) == {"n1": ["acme-prod", "globex-ml"], "n3": ["acme-prod"]}
    # The pod being scheduled does not occupy the node it is already on.
    assert index.occupants(["n1", "n3"], exclude_pod_uid="p3") == {"n1": ["acme-prod", "globex-ml"]}
    # A preemption's victims count as gone, on whichever node they are.
    assert index.occupants(["n1", "n3"], exclude_pod_uid="p1", gone={"p2", "p3"}) == {}
    assert index.occupants(["n1", "n3"], gone={"p2"}) == {"n1": ["acme-prod"], "n3": ["acme-prod"]}


def test_labels_kept_by_a_reader_never_change_under_it() -> None:
    # ClusterState.labels_of hands out the index's dicts without copying them: an event must
    # replace a node's labels, never edit them in place.
    index = NodeIndex()
    apply_node_event(index, "ADDED", {"metadata": {"name": "n1", "labels": {"a": "1"}}})
    kept = index.labels["n1"]
    apply_node_event(index, "MODIFIED", {"metadata": {"name": "n1", "labels": {"a": "2"}}})
    assert kept == {"a": "1"} and index.labels["n1"] == {"a": "2"}

"""The extender's preempt verb with the real OPA: of the nodes where kube-scheduler would evict
pods for a pod, only those the policy accepts once the victims are gone are kept. Before the verb,
kube-scheduler preempted on nodes the policy then refused the pod (45 spot pods evicted for 30
pods that never bound, in the fleet's saturation run of 2026-12-04 19:00)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import pytest

from pdp.embedded import EmbeddedPDP
from pdp.point import DecisionPoint
from pdp.substrate.kubernetes.enforcement.extender import ExtenderServer, SchedulerExtender
from pdp.substrate.kubernetes.enforcement.extender.wire import BadArgs
from tests.substrate.kubernetes.enforcement.conftest import labels, opa_stopped, own_pool, pod

NODES = {
    "eu-acme-1": labels("eu-west-1", "acme-h100-dedicated", "acme-eu"),
    "eu-shared-1": labels("eu-west-1", "eu-h100-shared"),
    "eu-shared-2": labels("eu-west-1", "eu-h100-shared"),
    "us-shared-1": labels("us-east-1", "us-h100-shared"),
}
# node -> [(pod uid, namespace)]: acme is dedicated, so its pods keep globex (shared) off a node.
PODS = {
    "eu-acme-1": [("a0", "acme-prod")],
    "eu-shared-1": [("a1", "acme-prod"), ("k1", "kube-system")],
    "eu-shared-2": [("a2", "acme-prod"), ("g2", "globex-ml")],
    "us-shared-1": [("g3", "globex-ml")],
}


class Cluster:
    """A ClusterView with the bulk occupancy read, victims left out as ClusterState leaves them."""

    def __init__(self, pods: Mapping[str, list[tuple[str, str]]] = PODS) -> None:
        self.pods = pods

    def node_labels(self, name: str) -> dict[str, str] | None:
        return NODES.get(name)

    def namespaces_on(self, node: str, exclude_pod_uid: str | None = None) -> list[str]:
        return sorted(ns for uid, ns in self.pods.get(node, []) if uid != exclude_pod_uid)

    def occupants(
        self, names: Iterable[str], exclude_pod_uid: str | None = None, gone: Collection[str] = ()
    ) -> dict[str, list[str]]:
        found = {}
        for name in names:
            kept = sorted(
                ns for uid, ns in self.pods.get(name, []) if uid != exclude_pod_uid and uid not in gone
            )
            if kept:
                found[name] = kept
        return found


class ViewWithoutBulkRead(Cluster):
    """A view offering only namespaces_on: it cannot leave victims out."""

    occupants = None  # type: ignore[assignment]


def globex_pod(uid: str = "globex-1") -> dict[str, Any]:
    return pod("trainer-0", namespace="globex-ml", uid=uid, limits={"nvidia.com/gpu": "1"})


def meta_victims(by_node: Mapping[str, list[str]], pdb: int = 0) -> dict[str, Any]:
    return {
        n: {"Pods": [{"UID": uid} for uid in uids], "NumPDBViolations": pdb} for n, uids in by_node.items()
    }


def preemption(p: dict[str, Any], by_node: Mapping[str, list[str]]) -> dict[str, Any]:
    return {"Pod": p, "NodeNameToVictims": None, "NodeNameToMetaVictims": meta_victims(by_node)}


# Evicting acme's pod frees eu-shared-1 for globex; on eu-shared-2 acme's pod stays (only
# globex's own is a victim); eu-acme-1 is acme's dedicated pool whatever is evicted.
CANDIDATES = {"eu-shared-1": ["a1"], "eu-shared-2": ["g2"], "eu-acme-1": ["a0"], "us-shared-1": ["g3"]}


def test_only_nodes_the_policy_accepts_once_the_victims_are_gone_are_kept(point: DecisionPoint) -> None:
    result = SchedulerExtender(point, Cluster()).preempt(preemption(globex_pod(), CANDIDATES))
    assert result == {"NodeNameToMetaVictims": meta_victims({"eu-shared-1": ["a1"], "us-shared-1": ["g3"]})}


def test_the_victims_count_as_gone_only_on_a_preemption(point: DecisionPoint) -> None:
    """The same node refused to filter (acme's pod is there) is kept for a preemption evicting it."""
    extender = SchedulerExtender(point, Cluster())
    refused = extender.filter({"Pod": globex_pod(), "NodeNames": ["eu-shared-1"], "Nodes": None})
    assert "ISOLATION_NODE_OCCUPIED" in refused["FailedAndUnresolvableNodes"]["eu-shared-1"]
    kept = extender.preempt(preemption(globex_pod(), {"eu-shared-1": ["a1"]}))
    assert set(kept["NodeNameToMetaVictims"]) == {"eu-shared-1"}


def test_a_view_that_cannot_leave_victims_out_refuses_rather_than_allows(point: DecisionPoint) -> None:
    result = SchedulerExtender(point, ViewWithoutBulkRead()).preempt(preemption(globex_pod(), CANDIDATES))
    assert set(result["NodeNameToMetaVictims"]) == {"us-shared-1"}


def test_whole_victim_pods_are_answered_by_uid(point: DecisionPoint) -> None:
    """A scheduler that is not nodeCacheCapable sends the victims as pods."""
    victim = pod("x", namespace="acme-prod", uid="a1", limits={"nvidia.com/gpu": "1"})
    args = {
        "Pod": globex_pod(),
        "NodeNameToVictims": {
            "eu-shared-1": {"Pods": [victim], "NumPDBViolations": 1},
            "eu-acme-1": {"Pods": [{**victim, "metadata": {**victim["metadata"], "uid": "a0"}}]},
        },
    }
    result = SchedulerExtender(point, Cluster()).preempt(args)
    assert result == {"NodeNameToMetaVictims": meta_victims({"eu-shared-1": ["a1"]}, pdb=1)}


def test_a_workload_level_deny_keeps_no_node(point: DecisionPoint) -> None:
    stray = pod("x", namespace="unowned", uid="u1", limits={"nvidia.com/gpu": "1"})
    assert SchedulerExtender(point, Cluster()).preempt(preemption(stray, CANDIDATES)) == {
        "NodeNameToMetaVictims": {}
    }


def test_an_engine_failure_keeps_no_node_never_an_allow(stack: EmbeddedPDP, point: DecisionPoint) -> None:
    extender = SchedulerExtender(point, Cluster(), timeout=0.3)
    extender.preempt(preemption(globex_pod("warm"), CANDIDATES))
    with opa_stopped(stack):
        result = extender.preempt(preemption(globex_pod("g-engine"), CANDIDATES))
    assert result == {"NodeNameToMetaVictims": {}}


def test_a_node_without_victims_is_left_out(point: DecisionPoint) -> None:
    """kube-scheduler (the extender not ignorable) fails the whole preemption on a node answered
    with no victim."""
    result = SchedulerExtender(point, Cluster()).preempt(preemption(globex_pod(), {"us-shared-1": []}))
    assert result == {"NodeNameToMetaVictims": {}}


def test_a_dedicated_tenant_keeps_its_own_pool_only(point: DecisionPoint) -> None:
    acme = pod(
        "llama-0",
        namespace="acme-prod",
        uid="acme-1",
        limits={"nvidia.com/gpu": "1"},
        tolerations=own_pool("acme-eu"),
    )
    result = SchedulerExtender(point, Cluster()).preempt(preemption(acme, CANDIDATES))
    assert set(result["NodeNameToMetaVictims"]) == {"eu-acme-1"}


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ([], "not a JSON object"),
        ({"Pod": globex_pod(), "NodeNameToMetaVictims": []}, "NodeNameToMetaVictims is not an object"),
        (
            {"Pod": globex_pod(), "NodeNameToMetaVictims": {"n": {"Pods": "a"}}},
            "NodeNameToMetaVictims.n.Pods",
        ),
        ({"Pod": globex_pod(), "NodeNameToMetaVictims": {"n": {"Pods": [{}]}}}, "Pods[0] has no uid"),
        (
            {
                "Pod": globex_pod(),
                "NodeNameToMetaVictims": {"n": {"Pods": [{"UID": "a"}], "NumPDBViolations": "1"}},
            },
            "NumPDBViolations is not an integer",
        ),
        (
            {"Pod": globex_pod(), "NodeNameToVictims": {"n": {"Pods": [{"metadata": {}}]}}},
            "NodeNameToVictims.n",
        ),
        (
            {"Pod": {"metadata": {}}, "NodeNameToMetaVictims": meta_victims({"n": ["a"]})},
            "Pod.metadata.namespace",
        ),
    ],
)
def test_malformed_args_are_refused_naming_the_field(point: DecisionPoint, args: Any, named: str) -> None:
    with pytest.raises(BadArgs, match=named.replace("[", r"\[").replace("]", r"\]")):
        SchedulerExtender(point, Cluster()).preempt(args)


def test_without_a_cluster_view_it_is_an_error(point: DecisionPoint) -> None:
    with pytest.raises(BadArgs, match="cluster view"):
        SchedulerExtender(point).preempt(preemption(globex_pod(), CANDIDATES))


def _post(server: ExtenderServer, body: bytes) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/preempt", body)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_over_http_a_malformed_body_is_a_400(point: DecisionPoint) -> None:
    """ExtenderPreemptionResult has no Error field: a 400 makes kube-scheduler preempt nothing."""
    with ExtenderServer(SchedulerExtender(point, Cluster())) as server:
        status, result = _post(server, json.dumps(preemption(globex_pod(), CANDIDATES)).encode())
        assert status == 200
        assert set(result["NodeNameToMetaVictims"]) == {"eu-shared-1", "us-shared-1"}
        assert _post(server, b"{nope")[0] == 400
        status, answer = _post(server, json.dumps({"NodeNameToMetaVictims": []}).encode())
        assert status == 400 and "NodeNameToMetaVictims" in answer["error"]

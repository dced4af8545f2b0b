"""The scheduler extender with the real OPA: node-level placement policy for one pod at a time."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Mapping
from typing import Any

import pytest

from pdp.embedded import EmbeddedPDP
from pdp.point import DecisionPoint
from pdp.substrate.kubernetes.enforcement import shapes
from pdp.substrate.kubernetes.enforcement.extender import (
    ExtenderServer,
    SchedulerExtender,
    scheduler_extender,
)
from pdp.substrate.kubernetes.enforcement.holdings import Holdings
from tests.substrate.kubernetes.enforcement.conftest import (
    CountingEngine,
    labels,
    node,
    opa_stopped,
    own_pool,
    pod,
)

NODES = {
    "eu-acme-1": labels("eu-west-1", "acme-h100-dedicated", "acme-eu"),
    "eu-acme-2": labels("eu-west-1", "acme-h100-dedicated", "acme-eu"),
    "eu-shared-1": labels("eu-west-1", "eu-h100-shared"),
    "eu-shared-2": labels("eu-west-1", "eu-h100-shared"),
    "us-shared-1": labels("us-east-1", "us-h100-shared"),
}


class FakeCluster:
    """A ClusterView: node labels and the namespaces of the pods on each node."""

    def __init__(
        self, node_labels: Mapping[str, dict[str, str]], pods: Mapping[str, list[tuple[str, str]]]
    ) -> None:
        self.labels = node_labels
        self.pods = pods  # node -> [(pod uid, namespace)]

    def node_labels(self, name: str) -> dict[str, str] | None:
        return self.labels.get(name)

    def namespaces_on(self, node: str, exclude_pod_uid: str | None = None) -> list[str]:
        return sorted(ns for uid, ns in self.pods.get(node, []) if uid != exclude_pod_uid)


def acme_pod(uid: str = "acme-1") -> dict[str, Any]:
    return pod(
        "llama-0",
        namespace="acme-prod",
        uid=uid,
        limits={"nvidia.com/gpu": "1"},
        tolerations=own_pool("acme-eu"),
    )


def globex_pod(uid: str = "globex-1") -> dict[str, Any]:
    return pod("trainer-0", namespace="globex-ml", uid=uid, limits={"nvidia.com/gpu": "1"})


def with_nodes(p: dict[str, Any], names: list[str] | None = None) -> dict[str, Any]:
    return {"Pod": p, "Nodes": {"items": [node(n, NODES[n]) for n in names or NODES]}, "NodeNames": None}


def with_names(p: dict[str, Any], names: list[str] | None = None) -> dict[str, Any]:
    return {"Pod": p, "Nodes": None, "NodeNames": names or list(NODES)}


def passed(result: dict[str, Any]) -> list[str]:
    if result["NodeNames"] is not None:
        return list(result["NodeNames"])
    return [n["metadata"]["name"] for n in result["Nodes"]["items"]]


def test_dedicated_tenant_passes_only_its_own_eu_nodes(
    point: DecisionPoint, counting: CountingEngine
) -> None:
    result = SchedulerExtender(point).filter(with_nodes(acme_pod()))
    assert result["Error"] == ""
    assert passed(result) == ["eu-acme-1", "eu-acme-2"]
    assert result["Nodes"]["items"][0] == node("eu-acme-1", NODES["eu-acme-1"])  # the original objects
    failed = result["FailedAndUnresolvableNodes"]
    assert set(failed) == {"eu-shared-1", "eu-shared-2", "us-shared-1"}
    assert failed["eu-shared-1"].startswith("ISOLATION_SHARED_POOL: ")
    assert "RESIDENCY_VIOLATION: " in failed["us-shared-1"] and "; " in failed["us-shared-1"]
    assert result["FailedNodes"] == {}
    assert counting.calls == 2  # the policy's label keys asked once (extender._decide), then the decision


def test_node_names_with_a_cluster_view_and_occupancy(point: DecisionPoint) -> None:
    cluster = FakeCluster(
        NODES,
        {
            "eu-shared-1": [("a1", "acme-prod"), ("k1", "kube-system")],
            "eu-shared-2": [("g0", "globex-ml"), ("k2", "kube-system")],
        },
    )
    result = SchedulerExtender(point, cluster).filter(with_names(globex_pod()))
    assert result["Nodes"] is None
    assert passed(result) == ["eu-shared-2", "us-shared-1"]
    failed = result["FailedAndUnresolvableNodes"]
    assert "ISOLATION_NODE_OCCUPIED" in failed["eu-shared-1"]
    assert set(failed) == {"eu-acme-1", "eu-acme-2", "eu-shared-1"}


def test_the_pod_being_scheduled_does_not_occupy_its_node(point: DecisionPoint) -> None:
    # A dedicated tenant's own pod (bound in the cache already, e.g. on a retry) is not "another tenant".
    cluster = FakeCluster(
        NODES, {"eu-shared-2": [("globex-7", "globex-ml")], "eu-acme-1": [("acme-9", "acme-prod")]}
    )
    result = SchedulerExtender(point, cluster).filter(with_names(globex_pod("globex-7"), ["eu-shared-2"]))
    assert passed(result) == ["eu-shared-2"]


def test_a_workload_level_deny_fails_every_node(point: DecisionPoint) -> None:
    stray = pod("x", namespace="unowned", uid="u1", limits={"nvidia.com/gpu": "1"})
    result = SchedulerExtender(point).filter(with_nodes(stray))
    assert passed(result) == []
    assert set(result["FailedAndUnresolvableNodes"]) == set(NODES)
    assert all(r.startswith("TENANT_UNKNOWN: ") for r in result["FailedAndUnresolvableNodes"].values())


def test_every_node_rejected_keeps_each_nodes_own_reasons(point: DecisionPoint) -> None:
    result = SchedulerExtender(point).filter(with_nodes(acme_pod(), ["us-shared-1", "eu-shared-1"]))
    assert passed(result) == []
    assert "RESIDENCY_VIOLATION" in result["FailedAndUnresolvableNodes"]["us-shared-1"]
    assert "RESIDENCY_VIOLATION" not in result["FailedAndUnresolvableNodes"]["eu-shared-1"]


def test_prioritize_after_filter_asks_the_engine_once(point: DecisionPoint, counting: CountingEngine) -> None:
    extender = SchedulerExtender(point)
    args = with_nodes(acme_pod())
    extender.filter(args)
    scores = extender.prioritize(args)
    assert counting.calls == 2  # the probe and the filter's decision
    assert {s["Host"]: s["Score"] for s in scores} == {
        "eu-acme-1": 10,
        "eu-acme-2": 10,
        "eu-shared-1": 0,
        "eu-shared-2": 0,
        "us-shared-1": 0,
    }
    # a different node set is another question; a prioritize without filter evaluates once
    extender.prioritize(with_nodes(acme_pod(), ["eu-acme-1", "us-shared-1"]))
    extender.prioritize(with_nodes(acme_pod(), ["eu-acme-1", "us-shared-1"]))
    assert counting.calls == 3


def test_empty_node_lists_need_no_decision(point: DecisionPoint, counting: CountingEngine) -> None:
    extender = SchedulerExtender(point)
    assert extender.filter({"Pod": acme_pod(), "Nodes": {"items": []}}) == {
        "Nodes": {"items": []},
        "NodeNames": None,
        "FailedNodes": {},
        "FailedAndUnresolvableNodes": {},
        "Error": "",
    }
    assert passed(extender.filter({"Pod": acme_pod(), "NodeNames": []})) == []
    assert extender.prioritize({"Pod": acme_pod(), "NodeNames": []}) == []
    assert counting.calls == 0


def test_pods_needing_no_policy_pass_every_node_without_a_decision(
    point: DecisionPoint, counting: CountingEngine
) -> None:
    plain = pod("web", namespace="kube-system", uid="w1")
    assert passed(SchedulerExtender(point).filter(with_nodes(plain))) == list(NODES)
    assert counting.calls == 0


@pytest.mark.parametrize(
    "args",
    [
        [],
        {},
        {"Pod": None, "NodeNames": ["a"]},
        {"Pod": {"metadata": {}}, "NodeNames": ["a"]},
        {"Pod": acme_pod(), "Nodes": {"items": [{"metadata": {}}]}},
        {"Pod": acme_pod(), "Nodes": {"items": "x"}},
        {"Pod": acme_pod(), "NodeNames": ["a", 1]},
        {"Pod": acme_pod(), "NodeNames": ["a", "a"]},
        {"Pod": pod(namespace="globex-ml", limits={"nvidia.com/gpu": "0.5"}), "NodeNames": ["a"]},
    ],
)
def test_malformed_args_set_error_and_pass_no_node(point: DecisionPoint, args: Any) -> None:
    result = SchedulerExtender(point, FakeCluster(NODES, {})).filter(args)
    assert result["Error"]
    assert result["Nodes"] is None and result["NodeNames"] is None
    assert SchedulerExtender(point).prioritize(args) == []


def test_node_names_without_a_cluster_view_is_an_error(point: DecisionPoint) -> None:
    assert "cluster view" in SchedulerExtender(point).filter(with_names(acme_pod()))["Error"]


def test_engine_failure_fails_every_node_never_an_allow(stack: EmbeddedPDP, point: DecisionPoint) -> None:
    extender = SchedulerExtender(point, timeout=0.3)
    extender.filter(with_nodes(globex_pod("warm")))
    with opa_stopped(stack):
        result = extender.filter(with_nodes(globex_pod("g-engine")))
    assert passed(result) == []
    assert all(r.startswith("ENGINE_TIMEOUT: ") for r in result["FailedAndUnresolvableNodes"].values())


def test_node_lists_above_the_schema_limit_are_clipped(
    point: DecisionPoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_extender, "MAX_NODES", 3)
    result = SchedulerExtender(point).filter(with_nodes(globex_pod()))
    assert passed(result) == ["eu-shared-1"]
    assert set(result["FailedNodes"]) == {"eu-shared-2", "us-shared-1"}
    assert "not evaluated" in result["FailedNodes"]["us-shared-1"]


def test_five_thousand_nodes(point: DecisionPoint, counting: CountingEngine) -> None:
    items = [
        node(
            f"n{i}", labels("eu-west-1", "eu-h100-shared") if i % 2 else labels("us-east-1", "us-h100-shared")
        )
        for i in range(5000)
    ]
    started = time.monotonic()
    result = SchedulerExtender(point).filter({"Pod": acme_pod(), "Nodes": {"items": items}})
    elapsed = time.monotonic() - started
    print(f"\nfilter over 5000 nodes: {elapsed * 1000:.0f} ms")
    assert result["Error"] == "" and counting.calls == 2
    assert len(result["FailedAndUnresolvableNodes"]) == 5000
    result = SchedulerExtender(point).filter({"Pod": globex_pod(), "Nodes": {"items": items}})
    assert len(passed(result)) == 5000


def _post(server: ExtenderServer, path: str, raw: bytes | None, method: str = "POST") -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, raw)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_over_http(point: DecisionPoint, counting: CountingEngine) -> None:
    with ExtenderServer(SchedulerExtender(point)) as server:
        assert server.url.startswith("http://127.0.0.1:")
        args = json.dumps(with_nodes(acme_pod())).encode()
        status, result = _post(server, "/filter", args)
        assert status == 200 and passed(result) == ["eu-acme-1", "eu-acme-2"]
        status, scores = _post(server, "/prioritize", args)
        assert status == 200 and sum(s["Score"] for s in scores) == 20
        assert counting.calls == 2
        assert _post(server, "/filter", b"{nope")[0] == 400
        status, result = _post(server, "/filter", b"[]")
        assert status == 200 and result["Error"]
        assert _post(server, "/bind", b"{}")[0] == 404
        assert _post(server, "/filter", None, method="GET")[0] == 405
        assert _post(server, "/healthz", None, method="GET")[0] == 200


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@pytest.mark.parametrize(
    ("where", "depth"),
    [("body", 50_000)]
    + [(w, d) for w in ("Pod", "a pod field", "node labels", "a node field") for d in (50_000, 1_000)],
)
def test_a_body_nested_too_deeply_is_a_400_naming_it(point: DecisionPoint, where: str, depth: int) -> None:
    """50,000 levels are past orjson's limit (1,024): a 400 naming it. 1,000 are within it but
    past msgspec's (the Python recursion limit): decided from orjson's reading, or, where a node
    that deep would have to be sent back, a 400 naming the nesting. Both were a RecursionError,
    answered 500."""
    deep, eu_acme = _nested(depth), NODES["eu-acme-1"]
    args = with_nodes(acme_pod())
    text = {
        "body": deep,
        "Pod": json.dumps({**args, "Pod": "DEEP"}),
        "a pod field": json.dumps({**args, "Pod": {**acme_pod(), "x": "DEEP"}}),
        "node labels": json.dumps({**args, "Nodes": {"items": [node("eu-acme-1", {"k": "DEEP"})]}}),
        "a node field": json.dumps(
            {**args, "Nodes": {"items": [{**node("eu-acme-1", eu_acme), "x": "DEEP"}]}}
        ),
    }[where]
    raw = text.replace('"DEEP"', deep).encode()
    with ExtenderServer(SchedulerExtender(point)) as server:
        for path in ("/filter", "/prioritize"):
            status, answer = _post(server, path, raw)
            if depth > 1024:
                assert status == 400 and "not JSON: depth limit exceeded" in answer["error"], answer
            else:
                assert status == 200 or (status == 400 and "nested too deeply" in answer["error"]), answer
        status, result = _post(server, "/filter", json.dumps(with_nodes(acme_pod())).encode())
        assert status == 200 and passed(result) == ["eu-acme-1", "eu-acme-2"]


def test_grouped_filter_equals_one_node_at_a_time(point: DecisionPoint) -> None:
    # The same verdicts whether the policy sees every node or one per shape.
    items = [
        node(f"n{i}", labels(*shape))
        for i, shape in enumerate(
            [
                ("eu-west-1", "acme-h100-dedicated", "acme-eu"),
                ("eu-west-1", "eu-h100-shared"),
                ("us-east-1", "us-h100-shared"),
            ]
            * 4
        )
    ]
    extender = SchedulerExtender(point)
    grouped = extender.filter({"Pod": acme_pod(), "Nodes": {"items": items}})
    singles: dict[str, Any] = {"FailedAndUnresolvableNodes": {}, "passed": set()}
    for item in items:
        one = SchedulerExtender(point).filter(
            {"Pod": acme_pod(uid=item["metadata"]["name"]), "Nodes": {"items": [item]}}
        )
        singles["FailedAndUnresolvableNodes"].update(one["FailedAndUnresolvableNodes"])
        singles["passed"] |= set(passed(one))
    assert grouped["FailedAndUnresolvableNodes"] == singles["FailedAndUnresolvableNodes"]
    assert set(passed(grouped)) == singles["passed"] and singles["passed"]


# -- the per-node shape cache: a node whose labels change is judged by its new labels ------------


def test_a_node_relabelled_between_cycles_is_judged_by_its_new_labels(point: DecisionPoint) -> None:
    extender = SchedulerExtender(point)
    own = labels("eu-west-1", "acme-h100-dedicated", "acme-eu")
    us = labels("us-east-1", "us-h100-shared")
    others = [node(f"pad-{i}", own) for i in range(3)]

    def cycle(n1: dict[str, str]) -> dict[str, Any]:
        # The same pod (a scheduler retry) over the same node names: only n1's labels differ.
        # n1 comes last, so a stale key would group it with the pads and judge it by theirs.
        return extender.filter({"Pod": acme_pod(), "Nodes": {"items": [*others, node("n1", n1)]}})

    assert "n1" in passed(cycle(own))
    moved = cycle(us)
    assert "n1" not in passed(moved)
    assert "RESIDENCY" in moved["FailedAndUnresolvableNodes"]["n1"]
    assert "n1" in passed(cycle(dict(own)))  # and back (labels equal to the first ones)


def test_a_cluster_view_changing_labels_in_place_is_not_served_stale(point: DecisionPoint) -> None:
    # NodeNames mode: a view that mutates the dict it returned must not fool the cache, which
    # keeps its own copy of the labels it keyed.
    own = labels("eu-west-1", "acme-h100-dedicated", "acme-eu")
    node_labels = {"pad": own, "n1": dict(own)}
    extender = SchedulerExtender(point, FakeCluster(node_labels, {}))
    assert passed(extender.filter(with_names(acme_pod(), ["pad", "n1"]))) == ["pad", "n1"]
    node_labels["n1"]["topology.kubernetes.io/region"] = "us-east-1"
    result = extender.filter(with_names(acme_pod(), ["pad", "n1"]))
    assert passed(result) == ["pad"] and "RESIDENCY" in result["FailedAndUnresolvableNodes"]["n1"]


def test_a_node_that_gains_another_tenants_pod_is_judged_again(point: DecisionPoint) -> None:
    own = labels("eu-west-1", "acme-h100-dedicated", "acme-eu")
    pods: dict[str, list[tuple[str, str]]] = {}
    extender = SchedulerExtender(point, FakeCluster({"n1": own, "n2": own}, pods))
    assert passed(extender.filter(with_names(acme_pod(), ["n1", "n2"]))) == ["n1", "n2"]
    pods["n2"] = [("other", "globex-ml")]
    result = extender.filter(with_names(acme_pod(), ["n1", "n2"]))
    assert passed(result) == ["n1"] and "n2" in result["FailedAndUnresolvableNodes"]


def test_shape_cache_keys_by_labels_and_stays_bounded() -> None:
    cache = shapes.ShapeCache(size=3)
    eu = labels("eu-west-1", "eu-h100-shared")
    first = cache.labels_key("a", eu)
    assert cache.labels_key("b", dict(eu)) is first  # equal labels: one interned key
    assert cache.labels_key("a", {**eu, "x": "1"}) != first
    assert cache.labels_key("a", {"v": ["not", "a", "string"], "k": "s"}) == frozenset({("k", "s")})
    for i in range(10):
        cache.labels_key(f"n{i}", eu)
    assert len(cache) <= 3


class HoldingCluster(FakeCluster):
    """A ClusterView that also counts what tenants hold (the real Holdings, fed pod events here)."""

    def __init__(self, node_labels: Mapping[str, dict[str, str]]) -> None:
        super().__init__(node_labels, {})
        self.holdings = Holdings()

    def held(self, namespace: str, exclude_pod_uid: str, project: Any) -> list[dict[str, Any]]:
        return self.holdings.held(
            namespace, exclude_pod_uid, lambda names: {n: self.labels[n] for n in names}, project
        )

    def allow(self, uid: str, namespace: str, gpus: Mapping[str, int], on: Any) -> None:
        self.holdings.allow(uid, namespace, gpus, on)


def bound(uid: str, namespace: str, node_name: str, gpus: int) -> dict[str, Any]:
    p = pod(f"p-{uid}", namespace=namespace, uid=uid, limits={"nvidia.com/gpu": str(gpus)})
    return {**p, "spec": {**p["spec"], "nodeName": node_name}, "status": {"phase": "Running"}}


def test_each_gpu_class_is_held_to_its_entitlement_for_pods_naming_none(point: DecisionPoint) -> None:
    # globex is entitled to 8 H100-80GB and 4 A100-40GB; quotas see only nvidia.com/gpu (12).
    a100 = "NVIDIA-A100-SXM4-40GB"
    fleet = {
        "us-shared-1": NODES["us-shared-1"],
        "us-a100-1": labels("us-east-1", "us-a100-shared", product=a100),
        "us-a100-2": labels("us-east-1", "us-a100-shared", product=a100),
    }
    cluster = HoldingCluster(fleet)
    cluster.holdings.apply_pod("ADDED", bound("g1", "globex-ml", "us-a100-1", 3))
    extender = SchedulerExtender(point, cluster)

    result = extender.filter(with_names(globex_pod("g2"), list(fleet)))
    assert sorted(passed(result)) == ["us-a100-1", "us-a100-2", "us-shared-1"]  # 3 + 1 A100s: within 4

    # the scheduler binds g2 asynchronously and asks about g3 before the binding shows
    result = extender.filter(with_names(globex_pod("g3"), list(fleet)))
    assert passed(result) == ["us-shared-1"]
    failed = result["FailedAndUnresolvableNodes"]
    assert failed["us-a100-2"].startswith(
        'ENTITLEMENT_EXCEEDED: the node has GPU class A100-40GB: tenant "globex" holds 4 and'
    )

    # g2's binding shows on an H100 node: the A100s are free again for g3
    cluster.holdings.apply_pod("MODIFIED", bound("g2", "globex-ml", "us-shared-1", 1))
    result = extender.filter(with_names(globex_pod("g3"), list(fleet)))
    assert sorted(passed(result)) == ["us-a100-1", "us-a100-2", "us-shared-1"]

"""The extender's HTTP path (`filter_json` / `prioritize_json`: a body in, JSON out, nodes read only
for their names and labels) answers exactly what decoding the whole body and `filter` answer."""

from __future__ import annotations

import http.client
import ssl
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.inputs import extender_args
from pdp.net.jsonhttp import HttpError
from pdp.point import DecisionPoint
from pdp.substrate.kubernetes.enforcement.extender import ExtenderServer, SchedulerExtender
from pdp.substrate.kubernetes.enforcement.extender.wire import read_args
from pdp.substrate.kubernetes.enforcement.shapes import Projection, ShapeCache
from tests.substrate.kubernetes.enforcement.conftest import CountingEngine, labels, node, pod
from tests.substrate.kubernetes.enforcement.extender.test_scheduler_extender import (
    NODES,
    FakeCluster,
    acme_pod,
    globex_pod,
    passed,
    with_names,
    with_nodes,
)

REGION = "topology.kubernetes.io/region"
READ = frozenset({REGION, "gpupaas.io/dedicated-tenant", "n"})
OCCUPIED = {"eu-shared-1": [("a1", "acme-prod")], "eu-shared-2": [("g0", "globex-ml")]}

WELL_FORMED: list[Any] = [
    with_nodes(acme_pod()),
    with_nodes(globex_pod()),
    with_nodes(acme_pod(), ["us-shared-1", "eu-shared-1"]),
    with_nodes(pod("x", namespace="unowned", uid="u1", limits={"nvidia.com/gpu": "1"})),
    with_nodes(pod("web", namespace="kube-system", uid="w1")),
    with_names(acme_pod()),
    with_names(globex_pod()),
    {"Pod": acme_pod(), "Nodes": {"items": []}},
    {"Pod": acme_pod(), "Nodes": {}},
    {"Pod": acme_pod(), "Nodes": None, "NodeNames": None},
    {"Pod": acme_pod(), "NodeNames": []},
    # Labels the policy reads as none, or partly: absent, null, not an object, non-string values.
    {
        "Pod": globex_pod(),
        "Nodes": {"items": [{"metadata": {"name": "a"}}, {"metadata": {"name": "b", "labels": None}}]},
    },
    {"Pod": globex_pod(), "Nodes": {"items": [{"metadata": {"name": "a", "labels": ["x"]}}]}},
    {
        "Pod": globex_pod(),
        "Nodes": {"items": [node("a", {**labels("eu-west-1", "eu-h100-shared"), "n": 1, "f": None})]},
    },
]
MALFORMED: list[Any] = [
    # The same error, worded once (parse_args).
    [],
    {},
    "x",
    {"Pod": None, "NodeNames": ["a"]},
    {"Pod": {"metadata": {}}, "NodeNames": ["a"]},
    {"Pod": acme_pod(), "Nodes": {"items": [{"metadata": {}}]}},
    {"Pod": acme_pod(), "Nodes": {"items": [{"metadata": {"name": ""}}]}},
    {"Pod": acme_pod(), "Nodes": {"items": [{"metadata": {"name": 7}}]}},
    {"Pod": acme_pod(), "Nodes": {"items": [{"metadata": None}]}},
    {"Pod": acme_pod(), "Nodes": {"items": [node("a", {}), 3]}},
    {"Pod": acme_pod(), "Nodes": {"items": [node("a", {}), node("a", {})]}},
    {"Pod": acme_pod(), "Nodes": {"items": "x"}},
    {"Pod": acme_pod(), "Nodes": [1]},
    {"Nodes": {"items": [node("a", {})]}},
    {"Pod": acme_pod(), "NodeNames": ["a", 1]},
    {"Pod": acme_pod(), "NodeNames": ["a", "a"]},
    {"Pod": acme_pod(), "NodeNames": "eu-acme-1"},
    {"Pod": acme_pod(), "NodeNames": ["eu-acme-1"], "Nodes": "ignored when names are given"},
    {"Pod": pod(namespace="globex-ml", limits={"nvidia.com/gpu": "0.5"}), "NodeNames": ["a"]},
]


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize("view", [False, True], ids=["no-view", "view"])
@pytest.mark.parametrize("args", WELL_FORMED + MALFORMED)
def test_the_http_path_answers_what_filter_answers(
    point: DecisionPoint, args: Any, view: bool, warm: bool
) -> None:
    # Warm: the extender has decided once, so it knows the label keys the policy reads and reads
    # a body's labels on those alone (read_args(read=...)); cold, it reads whole labels.
    def extender() -> SchedulerExtender:
        made = SchedulerExtender(point, FakeCluster(NODES, OCCUPIED) if view else None, cut_from=0)
        if warm:
            made.filter_json(orjson.dumps(with_nodes(globex_pod())))
            assert made._projection is not None
        return made

    body = orjson.dumps(args)
    assert orjson.loads(extender().filter_json(body)) == extender().filter(args)
    assert orjson.loads(extender().prioritize_json(body)) == extender().prioritize(args)


def _reads_a_non_string(args: Any, read: frozenset[str]) -> bool:
    """Whether some node's labels are not an object, or give a read key a non-string value."""
    for item in (args.get("Nodes") or {}).get("items") or []:
        given = item.get("metadata", {}).get("labels")
        if given is not None and not isinstance(given, dict):
            return True
        if any(type(v) is not str for k, v in (given or {}).items() if k in read):
            return True
    return False


@pytest.mark.parametrize("read", [None, READ], ids=["whole", "cut"])
@pytest.mark.parametrize("args", WELL_FORMED)
def test_well_formed_args_are_read_from_their_text(args: Any, read: frozenset[str] | None) -> None:
    # Not handed to parse_args: the comparison above is between two readings; except, when
    # reading on the policy's label keys, labels that are not an object or a read key that is
    # not a string (parse_args keys those as the whole-labels reading does).
    body = orjson.dumps(args)
    candidates = read_args(body, FakeCluster(NODES, OCCUPIED), ShapeCache(), read)
    if read is not None and _reads_a_non_string(args, read):
        assert candidates is None
        return
    assert candidates is not None
    if read is not None and candidates.keys:
        # The keys as the whole labels' keys cut to the read keys (shapes.Projection).
        assert candidates.cut_to == read and candidates.whole_keys is not None
        whole = read_args(body, None, ShapeCache())
        assert whole is not None and whole.keys is not None
        assert candidates.keys == Projection(read).project(whole.keys)
        assert candidates.whole_keys() == whole.keys


def test_labels_are_keyed_on_the_read_keys_alone() -> None:
    # Nodes that differ only in labels the policy does not read are one key; a read key splits.
    own = labels("eu-west-1", "acme-h100-dedicated", "acme-eu")
    items = [node(f"n{i}", {**own, "kubernetes.io/hostname": f"n{i}"}) for i in range(3)]
    items.append(node("n3", {**own, REGION: "us-east-1"}))
    body = orjson.dumps({"Pod": acme_pod(), "Nodes": {"items": items}})
    candidates = read_args(body, None, ShapeCache(), frozenset({REGION, "gpupaas.io/dedicated-tenant"}))
    assert candidates is not None and candidates.keys is not None
    assert candidates.keys[0] is candidates.keys[1] is candidates.keys[2]
    assert candidates.keys[0] == frozenset(
        {(REGION, "eu-west-1"), ("gpupaas.io/dedicated-tenant", "acme-eu")}
    )
    assert candidates.keys[3] == frozenset(
        {(REGION, "us-east-1"), ("gpupaas.io/dedicated-tenant", "acme-eu")}
    )


def test_five_thousand_nodes_over_the_http_path(point: DecisionPoint, counting: CountingEngine) -> None:
    body = extender_args(5000)
    fast = orjson.loads(SchedulerExtender(point).filter_json(body))
    assert fast == SchedulerExtender(point).filter(orjson.loads(body))
    assert len(fast["Nodes"]["items"]) == 1250 and len(fast["FailedAndUnresolvableNodes"]) == 3750
    assert counting.calls == 4  # each extender: the probe of the label keys the policy reads, the decision


def test_nodes_are_sent_back_as_the_text_they_came_in(point: DecisionPoint) -> None:
    # Spacing, escapes, number spelling and fields the policy never reads: the node that passes
    # is the scheduler's own text, not a re-encoding of it.
    eu = orjson.dumps(labels("eu-west-1", "eu-h100-shared")).decode()
    item = (
        '{ "metadata" : {"name":"eu-1", "labels": ' + eu + '},\n "status": {"capacity": {"cpu": 1.50e1},'
        ' "nodeInfo": {"osImage": "Debian \\u00e9"}}}'
    )
    body = b'{"Pod": %s, "Nodes": {"items": [%s]}}' % (orjson.dumps(globex_pod()), item.encode())
    answer = SchedulerExtender(point).filter_json(body)
    assert item.encode() in answer
    assert passed(orjson.loads(answer)) == ["eu-1"]


def test_a_node_relabelled_between_cycles_is_judged_by_its_new_labels(point: DecisionPoint) -> None:
    # The text path keys labels by their text: n1's new labels are a new text, keyed again.
    extender = SchedulerExtender(point)
    own = labels("eu-west-1", "acme-h100-dedicated", "acme-eu")
    pads = [node(f"pad-{i}", own) for i in range(3)]

    def cycle(n1: dict[str, str]) -> dict[str, Any]:
        args = {"Pod": acme_pod(), "Nodes": {"items": [*pads, node("n1", n1)]}}
        return orjson.loads(extender.filter_json(orjson.dumps(args)))  # type: ignore[no-any-return]

    assert "n1" in passed(cycle(own))
    moved = cycle(labels("us-east-1", "us-h100-shared"))
    assert "n1" not in passed(moved) and "RESIDENCY" in moved["FailedAndUnresolvableNodes"]["n1"]
    assert "n1" in passed(cycle(dict(own)))


@pytest.mark.parametrize(
    "body",
    [
        b"{nope",
        b'{"Pod": {}, "Nodes": {"items": [{"metadata": {"name": "a", "labels": {"x": 1e999}}}]}}',
        b'{"Pod": {"x": 1e999}, "Nodes": {"items": []}}',
    ],
)
def test_what_is_not_json_to_orjson_is_a_400(point: DecisionPoint, body: bytes) -> None:
    with pytest.raises(HttpError) as raised:
        SchedulerExtender(point).filter_json(body)
    assert raised.value.status == 400 and "not JSON" in raised.value.message


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_five_thousand_nodes_over_http(point: DecisionPoint, tls: bool, tls_files: tuple[Path, Path]) -> None:
    # A ~1.2 MB body in and a ~1.2 MB answer out, through the server (head and body written
    # together: one vectored send in the clear, one TLS write over HTTPS).
    body = extender_args(5000)
    cert, key = tls_files if tls else (None, None)
    with ExtenderServer(SchedulerExtender(point), cert_file=cert, key_file=key) as server:
        if tls:
            context = ssl.create_default_context(cafile=str(cert))
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                "127.0.0.1", server.port, context=context, timeout=30
            )
        else:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for _ in range(2):  # the same connection, kept alive
            conn.request("POST", "/filter", body)
            response = conn.getresponse()
            assert response.status == 200
            assert orjson.loads(response.read()) == SchedulerExtender(point).filter(orjson.loads(body))
        conn.close()


def test_an_informer_view_relabelling_a_node_is_judged_by_its_new_labels(point: DecisionPoint) -> None:
    # ClusterState replaces a node's labels dict on every event, so the shape cache recognises an
    # unchanged node by its dict alone; a relabelled node is a new dict, keyed again.
    from kubernetes import client as k8s

    from pdp.substrate.kubernetes.enforcement.cluster import ClusterState, apply_node_event

    state = ClusterState(k8s.ApiClient())  # never started: its index is filled as events would
    own = labels("eu-west-1", "acme-h100-dedicated", "acme-eu")
    state._nodes.replace([node("pad", own), node("n1", own)])
    extender = SchedulerExtender(point, state)
    assert passed(extender.filter(with_names(acme_pod(), ["pad", "n1"]))) == ["pad", "n1"]
    assert passed(extender.filter(with_names(acme_pod("again"), ["pad", "n1"]))) == ["pad", "n1"]
    apply_node_event(state._nodes, "MODIFIED", node("n1", labels("us-east-1", "us-h100-shared")))
    result = extender.filter(with_names(acme_pod("moved"), ["pad", "n1"]))
    assert passed(result) == ["pad"] and "RESIDENCY" in result["FailedAndUnresolvableNodes"]["n1"]
    apply_node_event(state._nodes, "MODIFIED", node("n1", dict(own)))
    assert passed(extender.filter(with_names(acme_pod("back"), ["pad", "n1"]))) == ["pad", "n1"]


def test_long_labels_are_read_on_the_read_keys_and_short_ones_by_their_text(point: DecisionPoint) -> None:
    # The bench's few short label texts cost less keyed by text; real nodes' long ones (their own
    # hostname, instance id...) less read on the keys the policy reads (CUT_FROM).
    cut: list[bool] = []

    def extender() -> SchedulerExtender:
        made = SchedulerExtender(point)
        read = made._read

        def recording(body: bytes) -> Any:
            candidates = read(body)
            cut.append(candidates.cut_to is not None)
            return candidates

        made._read = recording  # type: ignore[method-assign]
        return made

    short = extender()
    for _ in range(3):
        short.filter_json(extender_args(50))
    assert cut == [False, False, False]
    cut.clear()
    real = extender()
    answers = [orjson.loads(real.filter_json(extender_args(50, real_labels=True))) for _ in range(3)]
    assert cut == [False, True, True]  # the first body: before the policy has said what it reads
    assert answers[0] == answers[1] == answers[2] and passed(answers[0])

"""Node shapes keyed on the labels the policy reads: real nodes each carry labels of their own
(hostname, zone, instance id, feature-discovery timestamps) that no rule reads, and must not make
every node a shape of its own; a label a rule reads must still tell nodes apart.

Against the real OPA (and the wasm engine where a bundle is rebuilt): every verdict is compared
with the policy's answer on every node with its whole labels, asked without any grouping.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from pdp.embedded import EmbeddedPDP
from pdp.engine.base import EngineUnavailable
from pdp.point import DecideOptions, DecisionPoint
from pdp.substrate.kubernetes.enforcement.extender import SchedulerExtender
from pdp.substrate.kubernetes.enforcement.extender.verdict import (
    expand_verdict,
    place_intent,
    verdict_from_decision,
)
from pdp.substrate.kubernetes.enforcement.shapes import Projection, ShapeCache, group_by_shape, named_nodes
from pdp.substrate.kubernetes.enforcement.workloads import workload_from_object
from tests.conftest import EXAMPLES, ROOT, embedded_settings
from tests.substrate.kubernetes.enforcement.conftest import H100, labels, node, own_pool, pod
from tests.substrate.kubernetes.enforcement.extender.test_scheduler_extender import FakeCluster, passed

A100 = "NVIDIA-A100-SXM4-40GB"
MI300X = "AMD_Instinct_MI300X_OAM"
REGION = "topology.kubernetes.io/region"
PRODUCT = "nvidia.com/gpu.product"


class RecordingEngine:
    """The real engine, keeping each place_workload intent's node list (and optionally editing
    the result, as a bundle that reports something else would)."""

    def __init__(self, inner: Any, edit: Any = None) -> None:
        self.inner = inner
        self.edit = edit
        self.asked: list[list[Mapping[str, Any]]] = []

    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        self.asked.append(input_doc.get("place_workload", {}).get("nodes", []))
        result = self.inner.evaluate(path, input_doc, timeout=timeout)
        return self.edit(result) if self.edit is not None else result


def own_labels(name: str, i: int) -> dict[str, str]:
    """What a real node carries besides the platform's labels, several of them its own."""
    return {
        "kubernetes.io/hostname": name,
        "kubernetes.io/arch": "amd64",
        "topology.kubernetes.io/zone": f"zone-{'abc'[i % 3]}",
        "node.kubernetes.io/instance-type": ["p5.48xlarge", "p4d.24xlarge"][i % 2],
        "alpha.eksctl.io/instance-id": f"i-{0x0A1B2C3D4E5F + i * 7919:012x}",
        "nvidia.com/gfd.timestamp": str(1764700000 + i * 37),
        "feature.node.kubernetes.io/kernel-version.full": f"6.1.{102 + i % 4}",
        "nvidia.com/gpu.count": "8",
    }


# What the policy reads, per kind of node: region, GPU product (AMD's key for MI300X), sharing
# and MIG labels, the dedicated tenant; a product ending in -SHARED, no region at all, and the
# pool of a tenant the example fleet does not have.
KINDS: list[dict[str, str]] = [
    labels("eu-west-1", "acme-h100-dedicated", "acme-eu"),
    labels("eu-west-1", "eu-h100-shared"),
    {
        **labels("eu-west-1", "eu-a100-timeslice", product=A100),
        "nvidia.com/gpu.sharing-strategy": "time-slicing",
    },
    {REGION: "eu-central-1", "amd.com/gpu.product-name": MI300X, "gpupaas.io/pool": "eu-mi300x-shared"},
    labels("us-east-1", "us-h100-shared"),
    {**labels("us-east-1", "us-a100-mig", product=A100), "nvidia.com/mig.strategy": "single"},
    labels("us-east-1", "us-a100-spot", product=f"{A100}-SHARED"),
    {PRODUCT: H100, "gpupaas.io/pool": "unlabelled"},
    labels("eu-west-1", "other-co-pool", "other-co"),
]

# Nodes the example fleet lists by name (its data names their pools), then many more.
LISTED = {
    "eu-acme-1": 0,
    "eu-acme-2": 0,
    "eu-shared-1": 1,
    "eu-shared-2": 1,
    "eu-a100-ts-1": 2,
    "eu-mi300x-1": 3,
    "us-shared-1": 4,
    "us-shared-3": 4,
    "us-a100-mig-1": 5,
    "us-spot-1": 6,
}


def fleet(count: int = 240) -> dict[str, dict[str, str]]:
    kinds = {name: kind for name, kind in LISTED.items()}
    kinds.update({f"n-{i:03d}": i % len(KINDS) for i in range(count)})
    return {name: {**KINDS[kind], **own_labels(name, i)} for i, (name, kind) in enumerate(kinds.items())}


def occupancy(names: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Pods of other tenants (and of no tenant) on some nodes."""
    pods: dict[str, list[tuple[str, str]]] = {}
    for i, name in enumerate(names):
        if i % 7 == 0:
            pods[name] = [(f"g{i}", "globex-ml")]
        elif i % 11 == 0:
            pods[name] = [(f"a{i}", "acme-prod"), (f"k{i}", "kube-system")]
        elif i % 13 == 0:
            pods[name] = [(f"i{i}", "initech-batch")]
    return pods


def affinity(*terms: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": t} for t in terms]
            }
        }
    }


def _pods() -> dict[str, dict[str, Any]]:
    acme = {"namespace": "acme-prod", "limits": {"nvidia.com/gpu": "1"}, "tolerations": own_pool("acme-eu")}
    globex = {"namespace": "globex-ml", "limits": {"nvidia.com/gpu": "1"}}
    named_by_affinity = pod("aff", **globex, uid="p-aff")
    named_by_affinity["spec"]["affinity"] = affinity(
        [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["eu-acme-1", "n-009", "us-shared-3"]}]
    )
    acme_named_by_affinity = pod("aff", **acme, uid="p-acme-aff")
    acme_named_by_affinity["spec"]["affinity"] = affinity(
        [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["eu-acme-2", "n-018", "eu-shared-2"]}]
    )
    return {
        "acme": pod("llama-0", **acme, uid="p-acme"),
        "globex": pod("trainer-0", **globex, uid="p-globex"),
        "globex-a100": pod("a100", **globex, uid="p-a100", node_selector={PRODUCT: A100}),
        "globex-amd": pod("amd", namespace="globex-ml", uid="p-amd", limits={"amd.com/gpu": "1"}),
        "globex-shared": pod(
            "shared", namespace="globex-ml", uid="p-gs", limits={"nvidia.com/gpu.shared": "1"}
        ),
        "initech": pod("batch", namespace="initech-batch", uid="p-initech", limits={"nvidia.com/gpu": "1"}),
        "acme-shared": pod(
            "shared", namespace="acme-prod", uid="p-as", limits={"nvidia.com/gpu.shared": "1"}
        ),
        "acme-names-foreign": pod(
            "named", **acme, uid="p-named", node_selector={"kubernetes.io/hostname": "eu-shared-2"}
        ),
        "acme-names-own": pod("own", **acme, uid="p-own", node_selector={"kubernetes.io/hostname": "n-009"}),
        "globex-affinity": named_by_affinity,
        "acme-affinity": acme_named_by_affinity,
        "cpu-only": pod("cpu", namespace="globex-ml", uid="p-cpu", node_selector={REGION: "eu-west-1"}),
        "stray": pod("x", namespace="unowned", uid="p-stray", limits={"nvidia.com/gpu": "1"}),
    }


PODS = _pods()


def reference(
    point: DecisionPoint,
    p: Mapping[str, Any],
    nodes: Mapping[str, dict[str, str]],
    cluster: FakeCluster | None,
) -> tuple[set[str], dict[str, str]]:
    """The policy's verdict asked on every node with its whole labels, no grouping at all."""
    namespace = p["metadata"]["namespace"]
    workload = workload_from_object({**p, "kind": "Pod"}, namespace)
    asked = []
    for name, node_labels in nodes.items():
        entry: dict[str, Any] = {"name": name, "labels": node_labels}
        if cluster is not None:
            entry["namespaces"] = cluster.namespaces_on(name, exclude_pod_uid=p["metadata"]["uid"])
        asked.append(entry)
    decision = point.decide(place_intent(workload, asked), DecideOptions(timeout=30, record=False))
    # Worded as the extender answers kube-scheduler, each node its own group.
    verdict = expand_verdict(verdict_from_decision(decision, list(nodes)), {n: [n] for n in nodes})
    return set(verdict.eligible), dict(verdict.unresolvable)


def _filter(
    extender: SchedulerExtender, p: dict[str, Any], nodes: Mapping[str, dict[str, str]], by_name: bool
) -> Any:
    if by_name:
        return extender.filter({"Pod": p, "Nodes": None, "NodeNames": list(nodes)})
    body = json.dumps({"Pod": p, "Nodes": {"items": [node(n, nodes[n]) for n in nodes]}}).encode()
    return json.loads(extender.filter_json(body))


@pytest.fixture(scope="module")
def recording(stack: EmbeddedPDP) -> RecordingEngine:
    return RecordingEngine(stack.engine)


@pytest.mark.parametrize("cut_from", [0.0, math.inf], ids=["read-keys", "text-keys"])
@pytest.mark.parametrize("by_name", [False, True], ids=["Nodes", "NodeNames+occupancy"])
def test_grouped_on_read_labels_decides_as_every_node_with_whole_labels(
    stack: EmbeddedPDP, by_name: bool, cut_from: float
) -> None:
    # cut_from: a Nodes body read on the keys the policy reads, or keyed by its labels texts.
    nodes = fleet()
    cluster = FakeCluster(nodes, occupancy(list(nodes))) if by_name else None
    engine = RecordingEngine(stack.engine)
    extender = SchedulerExtender(DecisionPoint(engine), cluster, cut_from=cut_from)
    cut: list[bool] = []
    read = extender._read

    def recording(body: bytes) -> Any:
        candidates = read(body)
        cut.append(candidates.cut_to is not None)
        return candidates

    extender._read = recording  # type: ignore[method-assign]
    _filter(extender, PODS["globex"], nodes, by_name)
    # The keys the policy reads, asked once on no node; then the first decision is grouped on them.
    first = [len(asked) for asked in engine.asked]
    for name, p in PODS.items():
        engine.asked.clear()
        result = _filter(extender, p, nodes, by_name)
        eligible, unresolvable = reference(stack.point, p, nodes, cluster)
        assert result["Error"] == "", name
        assert set(passed(result)) == eligible, name
        assert result["FailedAndUnresolvableNodes"] == unresolvable, name
        assert result["FailedNodes"] == {}, name
        if name != "cpu-only":  # a CPU-only pod is not the policy's business: no decision
            # One decision on a few shapes, not one shape per node.
            assert len(engine.asked) == 1, name
            assert len(engine.asked[0]) < len(nodes) // 4, (name, len(engine.asked[0]))
    assert first[0] == 0 and 0 < first[1] < len(nodes) // 4, first
    # The verdicts differ between pods, so the comparison above can tell them apart.
    assert len({frozenset(passed(_filter(extender, p, nodes, by_name))) for p in PODS.values()}) >= 6
    if not by_name:  # the first body is read before the policy has said which keys it reads
        assert cut[1:] == [cut_from == 0] * (len(cut) - 1) and not cut[0], cut


def _acme_fleet() -> dict[str, dict[str, str]]:
    own = labels("eu-west-1", "acme-h100-dedicated", "acme-eu")
    return {f"acme-{i}": {**own, **own_labels(f"acme-{i}", i)} for i in range(40)}


def test_a_label_the_policy_reads_still_splits_shapes(counting: Any) -> None:
    nodes = _acme_fleet()
    engine = RecordingEngine(counting)
    extender = SchedulerExtender(DecisionPoint(engine))
    assert len(passed(_filter(extender, PODS["acme"], nodes, False))) == 40
    relabelled = {
        "acme-3": (REGION, "us-east-1", "RESIDENCY_VIOLATION"),
        "acme-7": (PRODUCT, A100, "NODE_GPU_CLASS_MISMATCH"),  # a GPU class's key, from the fleet data
        "acme-9": ("gpupaas.io/dedicated-tenant", "globex", "ISOLATION_FOREIGN_POOL"),
        "acme-12": ("nvidia.com/gpu.sharing-strategy", "mps", "SHARING_NOT_ALLOWED"),
        "acme-15": ("nvidia.com/mig.strategy", "mixed", "SHARING_NOT_ALLOWED"),
    }
    for name, (key, value, _) in relabelled.items():
        nodes[name] = {**nodes[name], key: value}
    engine.asked.clear()
    result = _filter(extender, PODS["acme"], nodes, False)
    assert set(passed(result)) == set(nodes) - set(relabelled)
    for name, (_, _, code) in relabelled.items():
        assert code in result["FailedAndUnresolvableNodes"][name], name
    assert [len(asked) for asked in engine.asked] == [1 + len(relabelled)]


def test_labels_the_policy_does_not_read_do_not_split_shapes(counting: Any) -> None:
    nodes = _acme_fleet()
    engine = RecordingEngine(counting)
    extender = SchedulerExtender(DecisionPoint(engine))
    _filter(extender, PODS["acme"], nodes, False)
    assert [len(asked) for asked in engine.asked] == [0, 1]  # the probe, then one shape, not 40
    for name in ("acme-2", "acme-5"):
        nodes[name] = {**nodes[name], "topology.kubernetes.io/zone": "elsewhere", "example.com/rack": "r9"}
    engine.asked.clear()
    result = _filter(extender, PODS["acme"], nodes, False)
    assert len(passed(result)) == 40
    assert [len(asked) for asked in engine.asked] == [1]
    # The labels the policy reads, and only those (the pool label is not one of them).
    assert engine.asked[0][0]["labels"] == {
        REGION: "eu-west-1",
        PRODUCT: H100,
        "nvidia.com/gpu.sharing-strategy": "none",
        "gpupaas.io/dedicated-tenant": "acme-eu",
    }


def _strip_keys(result: Any) -> Any:
    result["constraints"].pop("node_label_keys", None)
    return result


def test_a_policy_that_reports_no_keys_gets_whole_labels(counting: Any) -> None:
    nodes = _acme_fleet()
    engine = RecordingEngine(counting, edit=_strip_keys)
    extender = SchedulerExtender(DecisionPoint(engine))
    for _ in range(2):
        assert len(passed(_filter(extender, PODS["acme"], nodes, False))) == 40
    assert [len(asked) for asked in engine.asked] == [0, 40, 40]  # asked once what it reads


def test_a_decision_reporting_keys_the_projection_dropped_is_asked_again(counting: Any) -> None:
    # As after a new bundle whose policy reads a label the last one did not: the decision on
    # projected labels proves nothing, so the extender asks again on the keys it reports.
    nodes = _acme_fleet()
    nodes["acme-4"] = {**nodes["acme-4"], REGION: "us-east-1"}
    engine = RecordingEngine(counting)
    extender = SchedulerExtender(DecisionPoint(engine))
    _filter(extender, PODS["acme"], nodes, False)
    known = extender._projection
    assert known is not None and REGION in known.keys
    extender._projection = Projection(known.keys - {REGION})  # what a policy not reading regions reported
    engine.asked.clear()
    result = _filter(extender, PODS["acme"], nodes, False)
    assert "RESIDENCY_VIOLATION" in result["FailedAndUnresolvableNodes"]["acme-4"]
    assert [len(asked) for asked in engine.asked] == [1, 2]  # without the region (wrong), then with it
    assert extender._projection is not None and extender._projection.keys == known.keys


class FailsFirst(RecordingEngine):
    """The real engine, unavailable for its first `failures` evaluations (a sidecar starting)."""

    def __init__(self, inner: Any, failures: int) -> None:
        super().__init__(inner)
        self.failures = failures

    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise EngineUnavailable("starting")
        return super().evaluate(path, input_doc, timeout=timeout)


def test_the_keys_are_asked_again_until_the_policy_answers(counting: Any) -> None:
    nodes = _acme_fleet()
    engine = FailsFirst(counting, failures=2)  # the probe, then the decision on whole labels
    extender = SchedulerExtender(DecisionPoint(engine))
    first = _filter(extender, PODS["acme"], nodes, False)
    assert passed(first) == [] and all(
        r.startswith("ENGINE_UNAVAILABLE: ") for r in first["FailedAndUnresolvableNodes"].values()
    )
    assert engine.asked == []
    assert len(passed(_filter(extender, PODS["acme"], nodes, False))) == 40
    assert [len(asked) for asked in engine.asked] == [0, 1]  # asked again, then one shape


@pytest.fixture()
def wasm_stack(tmp_path: Path, opa_binary: Path) -> Iterator[EmbeddedPDP]:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    with EmbeddedPDP(embedded_settings(tmp_path, engine="wasm")) as running:
        yield running


def test_a_new_bundle_reading_another_label_is_followed(wasm_stack: EmbeddedPDP) -> None:
    # The fleet moves H100 nodes to another product label: the new bundle's policy reads a key
    # the extender's projection (learned on the old bundle) dropped.
    moved = "example.com/accelerator"
    nodes = _acme_fleet()
    for name in ("acme-1", "acme-2"):
        nodes[name] = {**nodes[name], moved: H100}
        del nodes[name][PRODUCT]
    engine = RecordingEngine(wasm_stack.engine)
    extender = SchedulerExtender(DecisionPoint(engine))
    pinned = pod(
        "p", namespace="acme-prod", uid="p1", limits={"nvidia.com/gpu": "1"}, tolerations=own_pool("acme-eu")
    )
    before = _filter(extender, pinned, nodes, False)
    assert set(passed(before)) == set(nodes) - {"acme-1", "acme-2"}
    fleet_file = wasm_stack.settings.fleet
    doc = yaml.safe_load(fleet_file.read_text())
    doc["fleet"]["gpu_classes"]["H100-80GB"]["node_label"]["key"] = moved
    fleet_file.write_text(yaml.safe_dump(doc))
    wasm_stack.build()
    engine.asked.clear()
    after = _filter(extender, pinned, nodes, False)
    assert set(passed(after)) == {"acme-1", "acme-2"}
    assert [len(asked) for asked in engine.asked] == [2, 2]  # without the new key (wrong), then with it
    assert extender._projection is not None and moved in extender._projection.keys
    engine.asked.clear()
    assert set(passed(_filter(extender, pinned, nodes, False))) == {"acme-1", "acme-2"}
    assert [len(asked) for asked in engine.asked] == [2]  # on the new keys from then on


def test_engine_failure_is_not_asked_again(stack: EmbeddedPDP) -> None:
    from tests.substrate.kubernetes.enforcement.conftest import opa_stopped

    engine = RecordingEngine(stack.engine)
    extender = SchedulerExtender(DecisionPoint(engine), timeout=0.3)
    nodes = _acme_fleet()
    _filter(extender, PODS["acme"], nodes, False)
    engine.asked.clear()
    with opa_stopped(stack):
        result = _filter(
            extender,
            pod("p", namespace="acme-prod", uid="other", limits={"nvidia.com/gpu": "1"}),
            nodes,
            False,
        )
    assert passed(result) == [] and len(engine.asked) == 1
    assert all(r.startswith("ENGINE_TIMEOUT: ") for r in result["FailedAndUnresolvableNodes"].values())


# -- the pieces -------------------------------------------------------------------------------------


def test_projection_keeps_read_keys_and_interns_equal_results() -> None:
    cache = ShapeCache()
    a = cache.labels_key("a", {REGION: "eu", "kubernetes.io/hostname": "a"})
    b = cache.labels_key("b", {REGION: "eu", "kubernetes.io/hostname": "b"})
    c = cache.labels_key("c", {REGION: "us", "kubernetes.io/hostname": "c"})
    projection = Projection(frozenset({REGION}))
    pa, pb, pc = projection.project([a, b, c])
    assert pa is pb and pa == frozenset({(REGION, "eu")}) and pc == frozenset({(REGION, "us")})
    assert projection.project([b, a]) == [pa, pa]
    small = Projection(frozenset({REGION}), size=2)
    small.project([a, b, c])
    assert len(small._cut) <= 3 and small.project([c]) == [pc]


def test_named_nodes_are_shapes_of_their_own() -> None:
    intent = place_intent({"namespace": "ns", "node_selector": {"kubernetes.io/hostname": "b"}}, [])
    candidates = frozenset({"a", "b", "c", "ns"})
    alone = named_nodes(intent, candidates)
    assert alone == {"b", "ns"}  # any string of the intent: a namespace named like a node too
    key = frozenset({(REGION, "eu")})
    grouping = group_by_shape(["a", "b", "c"], [key, key, key], None, alone)
    assert grouping.members == {"a": ["a", "c"], "b": ["b"]}
    assert grouping.keys == {"a": key, "b": key}


# -- the policy side: no rule reads a node's labels but through lib.node_labels -------------------


def _labels_readers(term: Any, in_data: bool = False) -> int:
    """How many times the string "labels" appears in `term`, refs into `data` aside."""
    if isinstance(term, dict):
        if term.get("type") == "string" and term.get("value") == "labels":
            return 0 if in_data else 1
        if term.get("type") == "ref":
            value = term.get("value") or []
            data_ref = bool(value) and value[0] == {"type": "var", "value": "data"}
            return sum(_labels_readers(t, in_data or data_ref) for t in value)
        return sum(_labels_readers(v, in_data) for v in term.values())
    if isinstance(term, list):
        return sum(_labels_readers(v, in_data) for v in term)
    return 0


def _rule_name(rule: Mapping[str, Any]) -> str:
    head = rule["head"]
    if head.get("name"):
        return str(head["name"])
    return str(head["ref"][0]["value"])


def test_policies_read_node_labels_only_through_node_labels(opa_binary: Path) -> None:
    # lib.node_labels keeps only lib.node_label_keys, the keys decisions report and the extender
    # keeps: a rule reading a node's "labels" any other way (node.labels[k], object.get(node,
    # "labels", ...)) would read keys the extender may have dropped.
    readers = set()
    modules = [p for p in (ROOT / "policies").rglob("*.rego") if not p.name.endswith("_test.rego")]
    assert len(modules) > 10
    for module in modules:
        parsed = json.loads(
            subprocess.run(
                [str(opa_binary), "parse", "--format", "json", str(module)], check=True, capture_output=True
            ).stdout
        )
        package = ".".join(str(t["value"]) for t in parsed["package"]["path"][1:])
        for rule in parsed.get("rules", []):
            if _labels_readers(rule):
                readers.add((package, _rule_name(rule)))
    assert readers == {("gpupaas.lib", "node_labels")}
    lib = (ROOT / "policies" / "gpupaas" / "lib" / "lib.rego").read_text()
    assert 'node_labels(node) := object.filter(object.get(node, "labels", {}), node_label_keys)' in lib

"""The mapping file's rules, applied to a small trace: nodes to clusters and pools, tasks to
tenants and pods, entitlements from the tenants' peak demand."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from bench.fleet.mapping import GPU, SHARED_GPU, load_mapping, peak_demand, plan
from bench.fleet.trace import TraceNode, TraceTask

SCHEMAS = Path(__file__).resolve().parents[3] / "pdp" / "schemas"


def node(n: int, model: str = "G2", gpus: int = 8) -> TraceNode:
    return TraceNode(f"openb-node-{n:04d}", n, 64000, 262144, gpus, model)


def task(
    n: int, qos: str = "LS", gpus: int = 1, milli: int = 1000, start: int = 0, end: int = 100
) -> TraceTask:
    return TraceTask(f"openb-pod-{n:04d}", n, 4000, 8192, gpus, milli, (), qos, start, end)


def test_nodes_go_to_clusters_and_pools_by_their_number() -> None:
    mapping = load_mapping()
    p = plan([node(n) for n in range(20)], [task(0)], mapping)
    by_name = {x.node.name: x for x in p.nodes}
    assert by_name["openb-node-0000"].cluster == "eu" and by_name["openb-node-0001"].cluster == "us"
    # (n // 2) % 10: 0 dedicated, 1-3 time-slicing, 4-9 whole
    assert by_name["openb-node-0000"].kind == "dedicated" and by_name["openb-node-0000"].owner == "acme"
    assert by_name["openb-node-0001"].owner == "bolt"
    assert by_name["openb-node-0002"].kind == "time-slicing"
    assert by_name["openb-node-0008"].kind == "whole"
    eu = p.fleet["clusters"]["eu"]["pools"]
    assert eu["eu-g2-dedicated-8g"] == {
        "gpu_class": "G2", "isolation": "dedicated", "tenant": "acme", "sharing_strategy": "none",
        "nodes": 1, "node_names": ["openb-node-0000"], "gpus_per_node": 8,
    }  # fmt: skip
    assert eu["eu-g2-time-slicing-8g"]["nodes"] == 3


def test_the_fleet_and_tenants_are_valid_documents() -> None:
    p = plan(
        [node(n) for n in range(40)],
        [task(n, q) for n, q in enumerate(["LS", "BE", "Burstable"] * 4)],
        load_mapping(),
    )
    jsonschema.validate({"fleet": p.fleet}, json.loads((SCHEMAS / "fleet.schema.json").read_text()))
    tenant_schema = json.loads((SCHEMAS / "tenant.schema.json").read_text())
    for policy in p.policies.values():
        jsonschema.validate({"tenant": policy}, tenant_schema)
    assert len(p.policies) == 12


def test_tasks_go_to_tenants_by_qos_share_and_number() -> None:
    p = plan(
        [node(n) for n in range(20)],
        [task(0), task(1), task(2, milli=300), task(3, milli=300), task(5, "BE")],
        load_mapping(),
    )
    tenant = {a.task.name: a.tenant.name for a in p.arrivals}
    assert tenant["openb-pod-0000"] == "acme" and tenant["openb-pod-0001"] == "bolt"
    assert tenant["openb-pod-0002"] == "crest" and tenant["openb-pod-0003"] == "delta"
    assert tenant["openb-pod-0005"] == "jade"  # spot tenants by number % 4: iris jade kite lumen
    pods = {a.task.name: a.pod for a in p.arrivals}
    shared = pods["openb-pod-0002"]["spec"]["containers"][0]["resources"]["limits"]
    assert shared == {SHARED_GPU: "2"}  # 300 thousandths on 4 replicas per GPU: ceil(1.2)
    whole = pods["openb-pod-0000"]["spec"]
    assert whole["containers"][0]["resources"]["limits"] == {GPU: "1"}
    assert whole["priorityClassName"] == "gpupaas-enterprise"
    assert whole["tolerations"][0]["value"] == "acme"


def test_peak_demand_counts_only_overlapping_spans() -> None:
    assert peak_demand([(0, 10, 1000), (10, 20, 1000)]) == 1000  # one ends as the next starts
    assert peak_demand([(0, 10, 1000), (5, 20, 500), (6, 7, 250)]) == 1750


def test_entitlements_follow_peak_demand_over_the_reachable_classes() -> None:
    nodes = [node(n, "G2" if n < 20 else "T4", 8 if n < 20 else 2) for n in range(40)]
    # four whole-GPU LS tasks of acme (even numbers) at once: peak 4 GPUs, 0.9 of it over its
    # dedicated nodes: eu (even n) with (n // 2) % 10 == 0: nodes 0 (G2, 8) and 20 (T4, 2)
    tasks = [task(n, gpus=1) for n in (0, 2, 4, 6)]
    p = plan(nodes, tasks, load_mapping())
    assert p.policies["acme"]["entitlements"] == {"G2": 3, "T4": 1}  # ceil(3.6*8/10), ceil(3.6*2/10)

"""The mapping file's rules, applied to a small trace: nodes to clusters and pools, tasks to
tenants and pods, entitlements from the tenants' peak demand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema

from bench.fleet.mapping import (
    GPU,
    SHARED_GPU,
    Tenant,
    all_at_once,
    load_mapping,
    peak_demand,
    plan,
    policy_document,
    stable_hash,
)
from bench.fleet.trace import TraceNode, TraceTask
from pdp.substrate.kueue.objects import tenant_borrows

SCHEMAS = Path(__file__).resolve().parents[3] / "pdp" / "schemas"


def node(n: int, model: str = "G2", gpus: int = 8) -> TraceNode:
    return TraceNode(f"openb-node-{n:04d}", n, 64000, 262144, gpus, model)


def task(
    n: int, qos: str = "LS", gpus: int = 1, milli: int = 1000, start: int = 0, end: int = 100
) -> TraceTask:
    return TraceTask(f"openb-pod-{n:04d}", n, 4000, 8192, gpus, milli, (), qos, start, end)


def test_nodes_go_to_clusters_and_pools_by_a_hash_of_their_name() -> None:
    mapping = load_mapping()
    p = plan([node(n) for n in range(60)], [task(0)], mapping)
    kinds = {0: "dedicated", 1: "time-slicing", 2: "time-slicing", 3: "time-slicing"}
    for placed in p.nodes:
        h = stable_hash(placed.node.name)
        assert placed.cluster == ("eu" if h % 2 == 0 else "us")
        assert placed.kind == kinds.get((h // 2) % 10, "whole")
        assert placed.owner == (
            {"eu": "acme", "us": "bolt"}[placed.cluster] if placed.kind == "dedicated" else ""
        )
        assert placed.pool == f"{placed.cluster}-g2-{placed.kind}-8g"
    pools = {name: pool for c in p.fleet["clusters"].values() for name, pool in c["pools"].items()}
    assert sum(pool["nodes"] for pool in pools.values()) == 60
    dedicated = pools["eu-g2-dedicated-8g"]
    assert dedicated["tenant"] == "acme" and dedicated["isolation"] == "dedicated"
    assert dedicated["node_names"] == [x.node.name for x in p.nodes if x.pool == "eu-g2-dedicated-8g"]
    assert pools["eu-g2-time-slicing-8g"]["sharing_strategy"] == "time-slicing"


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


def test_tasks_go_to_tenants_by_qos_share_and_a_hash_of_their_name() -> None:
    tasks = [task(n) for n in range(8)] + [task(n, milli=300) for n in range(8, 16)]
    tasks += [task(n, "BE") for n in range(16, 24)]
    p = plan([node(n) for n in range(20)], tasks, load_mapping())
    groups = {
        "whole": ["acme", "bolt"],
        "shares": ["crest", "delta"],
        "spot": ["iris", "jade", "kite", "lumen"],
    }
    for a in p.arrivals:
        group = "spot" if a.task.qos == "BE" else "shares" if a.task.shares_a_gpu else "whole"
        choices = groups[group]
        assert a.tenant.name == choices[stable_hash(a.task.name) % len(choices)]
    pods = {a.task.name: a.pod for a in p.arrivals}
    shared = pods["openb-pod-0008"]["spec"]["containers"][0]["resources"]["limits"]
    assert shared == {SHARED_GPU: "2"}  # 300 thousandths on 4 replicas per GPU: ceil(1.2)
    whole = next(a for a in p.arrivals if a.tenant.name == "acme").pod["spec"]
    assert whole["containers"][0]["resources"]["limits"] == {GPU: "1"}
    assert whole["priorityClassName"] == "gpupaas-enterprise"
    assert whole["tolerations"][0]["value"] == "acme"
    assert (
        next(a for a in p.arrivals if a.tenant.tier == "spot").pod["spec"]["priorityClassName"]
        == "gpupaas-spot"
    )


def test_the_saturation_plan_submits_every_task_at_the_start_and_deletes_none() -> None:
    tasks = [task(n, start=10 * n, end=10 * n + 5) for n in range(6)]
    p = plan([node(n) for n in range(4)], tasks, load_mapping())
    saturated = all_at_once(p)
    assert [a.task for a in saturated.arrivals] == [a.task for a in p.arrivals]
    assert {a.at for a in saturated.arrivals} == {0.0}
    assert {a.until for a in saturated.arrivals} == {math.inf}
    assert saturated.span == 0.0 and p.span > 0.0
    assert p.arrivals[1].at == 10.0  # the plan it came from is unchanged


def test_peak_demand_counts_only_overlapping_spans() -> None:
    assert peak_demand([(0, 10, 1000), (10, 20, 1000)]) == 1000  # one ends as the next starts
    assert peak_demand([(0, 10, 1000), (5, 20, 500), (6, 7, 250)]) == 1750


def test_entitlements_follow_peak_demand_over_the_reachable_classes() -> None:
    mapping = load_mapping()
    nodes = [node(n, "G2" if n < 100 else "T4", 8 if n < 100 else 2) for n in range(200)]
    tasks = [task(n) for n in range(40)]
    p = plan(nodes, tasks, mapping)
    acme = [a for a in p.arrivals if a.tenant.name == "acme"]
    assert acme, "no task of the sample went to acme"
    # all of acme's tasks at once: one GPU each; 0.9 of the peak over its dedicated (eu) nodes
    own = [x for x in p.nodes if x.kind == "dedicated" and x.owner == "acme"]
    gpus = {c: sum(x.node.gpus for x in own if x.gpu_class == c) for c in ("G2", "T4")}
    total = sum(gpus.values())
    expected = {c: math.ceil(0.9 * len(acme) * g / total) for c, g in gpus.items() if g}
    assert p.policies["acme"]["entitlements"] == {c: n for c, n in expected.items() if n}


def test_tenants_borrow_exactly_as_the_policy_lets_them(
    policy_borrowing: dict[tuple[str, bool], bool],
) -> None:
    # The living fleet's check counts only the tenants that cannot borrow (bench/fleet/promises.py):
    # the policy's rule (placement's `_borrows`, from lib.tiers), applied to the tenant's own
    # policy document, for every tier the mapping gives its tenants.
    for qos, tier in sorted(load_mapping()["tiers"].items()):
        t = Tenant(f"t-{qos.lower()}", tier, "shared", "any", sharing=False)
        allows = policy_document(t, {"G2": 1})["allow_preemption"]
        assert allows is t.allow_preemption
        assert t.borrows is policy_borrowing[(tier, allows)], (qos, tier, allows)
    # and the rule it applies, for every tier of the policy and either consent
    for (tier, consents), borrows in policy_borrowing.items():
        assert tenant_borrows(tier, consents) is borrows, (tier, consents)

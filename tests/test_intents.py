"""Malformed intents are refused with the path of the offending field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdp.intents import InvalidIntent, validate_intent
from pdp.schemas import intent_validator
from tests.conftest import EXAMPLES

DEPLOY = {
    "kind": "deploy_model",
    "tenant": "acme-eu",
    "deploy_model": {"deployment": "llama", "gpu_class": "H100-80GB", "gpus_per_replica": 2, "replicas": 1},
}


def with_change(path: list[str], value: Any) -> dict[str, Any]:
    intent = copy.deepcopy(DEPLOY)
    target: Any = intent
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return intent


@pytest.mark.parametrize("example", sorted((EXAMPLES / "intents").glob("*.json")), ids=lambda p: p.name)
def test_example_intents_are_valid(example: Path) -> None:
    validate_intent(json.loads(example.read_text()))


@pytest.mark.parametrize(
    ("intent", "field", "problem"),
    [
        (with_change(["kind"], "deploy"), "kind", "is not one of"),
        (with_change(["kind"], None), "kind", "is required"),
        (with_change(["deploy_model", "replicas"], 0), "deploy_model.replicas", "less than the minimum"),
        (with_change(["deploy_model", "replicas"], None), "deploy_model.replicas", "is required"),
        (
            with_change(["deploy_model", "gpus_per_replica"], "two"),
            "deploy_model.gpus_per_replica",
            "not of type 'integer'",
        ),
        (with_change(["deploy_model", "sharing"], "sometimes"), "deploy_model.sharing", "is not one of"),
        (with_change(["deploy_model", "colour"], "blue"), "deploy_model.colour", "is not a known field"),
        (with_change(["tenant"], "Not A Name"), "tenant", "does not match"),
        (with_change(["tenant"], None), "tenant", "is required"),
        (with_change(["deploy_model"], None), "deploy_model", "is required"),
        (with_change(["usage"], {"H100-80GB": -1}), "usage.H100-80GB", "less than the minimum"),
    ],
)
def test_invalid_intents_name_the_field(intent: dict[str, Any], field: str, problem: str) -> None:
    with pytest.raises(InvalidIntent) as raised:
        validate_intent(intent)
    assert raised.value.field == field
    assert problem in raised.value.problem


@pytest.mark.parametrize("kind", ["admit_workload", "place_workload"])
def test_unknown_workload_fields_are_named(kind: str) -> None:
    workload = {"namespace": "acme-prod", "name": "p", "colour": "blue"}
    if kind == "place_workload":
        workload["nodes"] = []
    with pytest.raises(InvalidIntent) as raised:
        validate_intent({"kind": kind, kind: workload})
    assert raised.value.field == f"{kind}.colour"
    assert raised.value.problem == "is not a known field"


def test_only_placement_carries_nodes() -> None:
    with pytest.raises(InvalidIntent) as raised:
        validate_intent(
            {"kind": "admit_workload", "admit_workload": {"namespace": "a", "name": "p", "nodes": []}}
        )
    assert raised.value.field == "admit_workload.nodes"
    with pytest.raises(InvalidIntent) as raised:
        validate_intent({"kind": "place_workload", "place_workload": {"namespace": "a", "name": "p"}})
    assert raised.value.field == "place_workload.nodes"
    assert raised.value.problem == "is required"


def test_not_an_object() -> None:
    with pytest.raises(InvalidIntent, match="must be a JSON object"):
        validate_intent(["deploy_model"])


def test_create_tenant_policy_is_checked_against_the_tenant_schema() -> None:
    policy = {
        "name": "newco",
        "tier": "gold",
        "isolation": "shared",
        "data_residency": "any",
        "allow_preemption": False,
        "allow_gpu_sharing": False,
        "namespaces": ["newco"],
        "entitlements": {"H100-80GB": 1},
    }
    intent = {"kind": "create_tenant", "tenant": "newco", "create_tenant": {"policy": policy}}
    with pytest.raises(InvalidIntent) as raised:
        validate_intent(intent)
    assert raised.value.field == "create_tenant.policy.tier"

    policy["tier"] = "standard"
    intent["tenant"] = "other"
    with pytest.raises(InvalidIntent) as raised:
        validate_intent(intent)
    assert raised.value.field == "tenant"
    assert "newco" in raised.value.problem


def test_batch_prefix_names_the_intent() -> None:
    with pytest.raises(InvalidIntent) as raised:
        validate_intent(with_change(["deploy_model", "replicas"], -3), prefix=["intents", 4])
    assert raised.value.field == "intents[4].deploy_model.replicas"


# --- the compiled fast check accepts exactly what jsonschema accepts --------------------------

_WORKLOAD = {
    "namespace": "acme-prod",
    "name": "llama-0",
    "kind": "Pod",
    "resources": {"nvidia.com/gpu": 1},
    "node_selector": {"topology.kubernetes.io/region": "eu-west-1"},
    "node_affinity": [[{"key": "gpupaas.io/pool", "operator": "In", "values": ["p1"]}]],
    "tolerations": [
        {"key": "gpupaas.io/dedicated", "operator": "Equal", "value": "acme-eu", "effect": "NoSchedule"}
    ],
    "priority_class_name": "gpupaas-standard",
    "node_name": "n1",
    "resource_claims": ["c1"],
}
_EXAMPLE_INTENTS = [json.loads(p.read_text()) for p in sorted((EXAMPLES / "intents").glob("*.json"))] + [
    {"kind": "admit_workload", "actor": "u", "admit_workload": _WORKLOAD},
    {
        "kind": "place_workload",
        "place_workload": {**_WORKLOAD, "nodes": [{"name": "n1", "labels": {"a": "b"}, "namespaces": ["x"]}]},
    },
]

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 100_000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=70),
    st.sampled_from(["", "H100-80GB", "acme-eu", "none", "mps", "enterprise", "dedicated", "x" * 300]),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(0, 3), max_size=2),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += _paths(value, (*prefix, i))
    return out


@st.composite
def _mutated_intents(draw: st.DrawFn) -> dict[str, Any]:
    intent = copy.deepcopy(draw(st.sampled_from(_EXAMPLE_INTENTS)))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(_paths(intent) or [("kind",)]))
        parent: Any = intent
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "cluster", "sharing", "usage"]))] = draw(_values)
        elif isinstance(parent, (dict, list)):
            parent[path[-1]] = draw(_values)
    return intent


@settings(max_examples=400, deadline=None)
@given(_mutated_intents())
def test_fast_check_agrees_with_jsonschema(intent: dict[str, Any]) -> None:
    from pdp.intents import KINDS
    from pdp.schemas import fast_intent_check, intent_validator

    kind = intent.get("kind")
    if kind not in KINDS:
        return
    fast = fast_intent_check(kind)
    if fast is None:
        return
    assert fast(intent) == intent_validator(kind).is_valid(intent)


def test_the_fast_check_covers_the_kinds_on_the_hot_path() -> None:
    from pdp.schemas import fast_intent_check

    # admit_workload and place_workload use unevaluatedProperties, which fastjsonschema lacks: it
    # checks them with the equivalent additionalProperties (the webhook validates every review).
    for kind in ("deploy_model", "scale", "admit_workload", "place_workload"):
        assert fast_intent_check(kind) is not None, kind


def test_the_fast_check_refuses_a_property_the_workload_does_not_declare() -> None:
    from pdp.schemas import fast_intent_check, intent_validator

    for kind, extra in (("admit_workload", {}), ("place_workload", {"nodes": []})):
        intent = {"kind": kind, kind: {**_WORKLOAD, **extra}}
        check = fast_intent_check(kind)
        assert check is not None and check(intent) and intent_validator(kind).is_valid(intent)
        intent[kind]["nodez"] = []
        assert not check(intent) and not intent_validator(kind).is_valid(intent)


def test_a_name_with_a_trailing_newline_is_refused_by_both_validators() -> None:
    # Python's `$` matches before a final newline; JSON Schema's (ECMA-262) does not. Hypothesis
    # found jsonschema accepting the tenant "0\n" that the compiled check refused.
    intent = {
        "kind": "deploy_model",
        "tenant": "acme\n",
        "deploy_model": {"deployment": "a", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 1},
    }
    assert not intent_validator("deploy_model").is_valid(intent)
    with pytest.raises(InvalidIntent) as raised:
        validate_intent(intent)
    assert raised.value.field == "tenant"

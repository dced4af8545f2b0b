"""Malformed intents are refused with the path of the offending field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from pdp.intents import InvalidIntent, validate_intent

from .conftest import EXAMPLES

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

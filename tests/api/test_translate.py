"""gRPC messages <-> intent and decision documents, as pure functions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
from pdp.api.translate import decision_from_proto, decision_to_proto, intent_from_proto, intent_to_proto
from pdp.decision import Decision, Outcome, Reason
from pdp.intents import InvalidIntent, validate_intent
from tests.conftest import EXAMPLES

PLACE = {
    "kind": "place_workload",
    "usage": {"H100-80GB": 2},
    "place_workload": {
        "namespace": "acme-prod",
        "name": "llama-0",
        "resources": {"nvidia.com/gpu": 2},
        "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "node_affinity": [
            [{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]}]
        ],
        "tolerations": [
            {"key": "gpupaas.io/dedicated", "operator": "Equal", "value": "acme-eu", "effect": "NoSchedule"}
        ],
        "priority_class_name": "gpupaas-enterprise",
        "nodes": [{"name": "n1", "labels": {"a": "b"}, "tenants": ["acme-eu"]}, {"name": "n2"}],
    },
}


@pytest.mark.parametrize("example", sorted((EXAMPLES / "intents").glob("*.json")), ids=lambda p: p.name)
def test_example_intents_round_trip(example: Path) -> None:
    intent = json.loads(example.read_text())
    assert intent_from_proto(intent_to_proto(intent)) == intent


def test_placement_is_flattened_and_affinity_terms_become_lists() -> None:
    assert intent_from_proto(intent_to_proto(PLACE)) == PLACE
    validate_intent(PLACE)


def test_zero_replicas_survive_for_scaling() -> None:
    intent = {
        "kind": "scale",
        "tenant": "globex",
        "scale": {
            "deployment": "d",
            "gpu_class": "H100-80GB",
            "gpus_per_replica": 1,
            "current_replicas": 0,
            "target_replicas": 2,
        },
    }
    assert intent_from_proto(intent_to_proto(intent)) == intent


def test_create_tenant_numbers_come_back_as_integers() -> None:
    policy = {
        "name": "newco",
        "entitlements": {"H100-80GB": 4},
        "sla": {"class": "throughput", "availability": 99.5},
    }
    message = pb.Intent(tenant="newco")
    message.create_tenant.policy.update(policy)
    assert intent_from_proto(message)["create_tenant"]["policy"] == policy


def test_intent_without_action_names_the_field() -> None:
    with pytest.raises(InvalidIntent) as raised:
        intent_from_proto(pb.Intent(tenant="acme-eu"))
    assert raised.value.field == "action"


def test_decision_round_trip() -> None:
    decision = Decision(
        outcome=Outcome.NEEDS_APPROVAL,
        reasons=(Reason("QUOTA_APPROVAL_REQUIRED", "over by 2", "gpupaas.admission"),),
        bundle_revision="abc-g123",
        decision_id="id-1",
        decided_at=datetime(2026, 11, 28, 10, 0, 0, 123000, tzinfo=UTC),
        evaluation_ms=0.75,
        kind="scale",
        tenant="acme-eu",
        constraints={
            "eligible_clusters": ["eu-west"],
            "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
            "node_affinity": [
                {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]}
            ],
            "isolation": {
                "mode": "dedicated",
                "gpu_sharing": False,
                "sharing_strategies": ["none"],
                "dedicated_pools": ["acme-h100-dedicated"],
            },
            "rejected_nodes": [
                {"node": "n2", "reasons": [{"code": "RESIDENCY_VIOLATION", "message": "m", "policy": "p"}]}
            ],
            "priority_class_name": "gpupaas-enterprise",
        },
        obligations=(
            {"code": "DESTROY_DATA", "description": "wipe", "params": {"verify": True, "namespaces": ["a"]}},
        ),
    )
    doc = decision_from_proto(decision_to_proto(decision))
    assert doc["outcome"] == "NEEDS_APPROVAL"
    assert doc["reasons"] == [
        {"code": "QUOTA_APPROVAL_REQUIRED", "message": "over by 2", "policy": "gpupaas.admission"}
    ]
    assert doc["constraints"] == decision.constraints
    assert doc["obligations"] == [dict(o) for o in decision.obligations]
    assert (
        doc["bundle_revision"] == "abc-g123" and doc["decision_id"] == "id-1" and doc["tenant"] == "acme-eu"
    )
    assert doc["decided_at"] == "2026-11-28T10:00:00.123Z"
    assert doc["evaluation_ms"] == 0.75


names = st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True)


@given(
    tenant=names,
    deployment=names,
    replicas=st.integers(1, 1000),
    per_replica=st.integers(1, 16),
    sharing=st.sampled_from(["none", "time-slicing", "mps", "mig"]),
    usage=st.dictionaries(st.sampled_from(["H100-80GB", "A100-40GB", "MI300X"]), st.integers(0, 500)),
)
def test_deploy_intents_round_trip(
    tenant: str, deployment: str, replicas: int, per_replica: int, sharing: str, usage: dict[str, int]
) -> None:
    intent = {
        "kind": "deploy_model",
        "tenant": tenant,
        "deploy_model": {
            "deployment": deployment,
            "gpu_class": "H100-80GB",
            "gpus_per_replica": per_replica,
            "replicas": replicas,
            "sharing": sharing,
        },
    }
    if usage:
        intent["usage"] = usage
    assert intent_from_proto(intent_to_proto(intent)) == intent


def test_change_sla_keeps_only_the_fields_set() -> None:
    intent = {"kind": "change_sla", "tenant": "globex", "change_sla": {"isolation": "dedicated"}}
    message = intent_to_proto(intent)
    assert message.WhichOneof("action") == "change_sla" and message.change_sla.tier == ""
    assert intent_from_proto(message) == intent
    validate_intent(intent)
    with pytest.raises(InvalidIntent, match="change_sla"):
        validate_intent({"kind": "change_sla", "tenant": "globex", "change_sla": {}})


def test_decision_constraints_fill_like_json_format_and_ignore_unknown_fields() -> None:
    # decision_to_proto fills messages from a plan instead of json_format.ParseDict (for speed);
    # it must build the very message ParseDict would, and skip fields the proto does not have yet.
    from google.protobuf import json_format

    constraints = {
        "eligible_clusters": ["eu-west", "eu-central"],
        "eligible_nodes": ["n1"],
        "rejected_nodes": [{"node": "n2", "reasons": [{"code": "C", "message": "m", "policy": "p"}]}],
        "node_selector": {"a": "b", "c": "d"},
        "node_affinity": [{"key": "k", "operator": "In", "values": ["x", "y"]}],
        "tolerations": [{"key": "t", "operator": "Equal", "value": "v", "effect": "NoSchedule"}],
        "priority_class_name": "gpupaas-spot",
        "isolation": {"mode": "shared", "gpu_sharing": True, "sharing_strategies": ["mps"]},
        "preemptible_victims": [{"tenant": "t", "workload": "w", "priority_class_name": "p"}],
        "a_field_from_a_newer_policy": {"nested": [1, 2]},
    }
    obligation = {"code": "DESTROY_DATA", "description": "d", "params": {"n": 2, "x": ["y"]}, "new": 1}
    decision = Decision(
        outcome=Outcome.ALLOW,
        reasons=(),
        bundle_revision="r",
        decision_id="i",
        decided_at=datetime(2026, 11, 28, tzinfo=UTC),
        evaluation_ms=1.0,
        kind="deploy_model",
        tenant="t",
        constraints=constraints,
        obligations=(obligation,),
    )
    expected = pb.Decision()
    json_format.ParseDict(constraints, expected.constraints, ignore_unknown_fields=True)
    json_format.ParseDict(obligation, expected.obligations.add(), ignore_unknown_fields=True)
    message = decision_to_proto(decision)
    assert message.constraints == expected.constraints
    assert list(message.obligations) == list(expected.obligations)
    assert message.constraints.isolation.HasField("gpu_sharing")


@pytest.mark.parametrize(
    "constraints",
    [
        {"eligible_clusters": ["eu-west"], "node_selector": {"a": "b"}},  # nothing empty: the fast path
        {"eligible_clusters": [], "node_selector": {}, "isolation": {"dedicated_pools": []}},
        {"eligible_clusters": ["x[]{}"], "node_selector": {"k": "{}"}},  # brackets inside strings only
        {"eligible_clusters": ["x[]"], "tolerations": [{"key": "k", "values": []}]},
    ],
)
def test_empty_collections_survive_the_round_trip(constraints: dict[str, object]) -> None:
    decision = Decision(
        outcome=Outcome.ALLOW,
        reasons=[],
        warnings=[],
        constraints=constraints,
        obligations=[],
        bundle_revision="r",
        decision_id="d",
        decided_at=datetime(2026, 1, 1, tzinfo=UTC),
        evaluation_ms=1.0,
        tenant="acme-eu",
        kind="deploy_model",
    )
    assert decision_from_proto(decision_to_proto(decision))["constraints"] == constraints


def _message_values(descriptor: Any, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Field values for a message of `descriptor`, zeroes and empty strings included (the values
    proto3 cannot tell from unset), for the messages an Intent is made of."""
    from google.protobuf.descriptor import FieldDescriptor as F

    scalar = {
        F.TYPE_STRING: st.sampled_from(["", "a", "eu-west", "é"]),
        F.TYPE_BOOL: st.booleans(),
        F.TYPE_INT32: st.sampled_from([0, 1, -1, 7, 2**31 - 1]),
        F.TYPE_DOUBLE: st.sampled_from([0.0, 1.0, 0.5, -2.25, 14.4, 1e9]),
    }
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            value = nested.fields_by_name["value"]
            fields[field.name] = st.dictionaries(
                st.sampled_from(["", "k", "nvidia.com/gpu"]), scalar[value.type]
            )
        elif nested is not None:
            if nested.full_name == "google.protobuf.Struct" or depth > 3:
                continue
            inner = _message_values(nested, depth + 1)
            fields[field.name] = st.lists(inner, max_size=2) if field.is_repeated else inner
        else:
            fields[field.name] = (
                st.lists(scalar[field.type], max_size=2) if field.is_repeated else scalar[field.type]
            )
    return st.fixed_dictionaries({}, optional=fields)


def _set(message: Any, values: dict[str, Any]) -> Any:
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        nested = field.message_type
        if nested is not None and nested.GetOptions().map_entry:
            getattr(message, name).update(value)
        elif nested is not None and field.is_repeated:
            for item in value:
                _set(getattr(message, name).add(), item)
        elif nested is not None:
            _set(getattr(message, name), value)
            getattr(message, name).SetInParent()
        elif field.is_repeated:
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)
    return message


_ACTIONS = [f for f in pb.Intent.DESCRIPTOR.oneofs_by_name["action"].fields if f.name != "create_tenant"]


@given(st.data())
def test_intent_messages_read_as_json_format_reads_them(data: st.DataObject) -> None:
    # intent_from_proto reads messages by ListFields instead of json_format (for speed): for every
    # action but create_tenant (a Struct, left to json_format), with and without zeroes kept, the
    # same document as json_format.MessageToDict.
    from pdp.api.translate import _as_dict, _as_dict_reference

    field = data.draw(st.sampled_from(_ACTIONS))
    message = pb.Intent(tenant=data.draw(st.sampled_from(["", "acme-eu"])))
    message.usage.update(data.draw(st.dictionaries(st.sampled_from(["H100-80GB", ""]), st.integers(0, 9))))
    payload = getattr(message, field.name)
    _set(payload, data.draw(_message_values(field.message_type)))
    payload.SetInParent()
    for keep_zeroes in (False, True):
        assert _as_dict(payload, keep_zeroes=keep_zeroes) == _as_dict_reference(
            payload, keep_zeroes=keep_zeroes
        )
        assert _as_dict(message, keep_zeroes=keep_zeroes) == _as_dict_reference(
            message, keep_zeroes=keep_zeroes
        )

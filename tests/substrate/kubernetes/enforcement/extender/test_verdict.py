"""The verdict on node shapes, pure: one decision per shape, applied to every node of it."""

from __future__ import annotations

from pdp.substrate.kubernetes.enforcement.extender.verdict import Verdict, expand_verdict, group_nodes
from tests.substrate.kubernetes.enforcement.conftest import labels


def test_nodes_of_one_shape_are_decided_once_and_named_in_their_own_reasons() -> None:
    eu = labels("eu-west-1", "eu-h100-shared")
    nodes = [
        {"name": "a", "labels": eu, "namespaces": []},
        {"name": "b", "labels": dict(eu), "namespaces": []},
        {"name": "c", "labels": eu, "namespaces": ["globex-ml"]},
        {"name": "d", "labels": labels("us-east-1", "us-h100-shared"), "namespaces": []},
    ]
    groups = group_nodes(nodes)
    assert groups == {"a": ["a", "b"], "c": ["c"], "d": ["d"]}
    verdict = Verdict(
        frozenset({"a"}), {"c": 'CODE: node "c" hosts x', "d": 'RESIDENCY_VIOLATION: node "d" is in us'}
    )
    expanded = expand_verdict(verdict, groups)
    assert expanded.eligible == {"a", "b"}
    assert expanded.unresolvable == {
        "c": 'CODE: node "c" hosts x',
        "d": 'RESIDENCY_VIOLATION: node "d" is in us',
    }
    many = expand_verdict(Verdict(frozenset(), {"a": 'X: node "a" is wrong'}), {"a": ["a", "b"]})
    assert many.unresolvable == {"a": 'X: node "a" is wrong', "b": 'X: node "b" is wrong'}

"""The verdict on node shapes, pure: one decision per shape, applied to every node of it."""

from __future__ import annotations

from pdp.substrate.kubernetes.enforcement.extender.verdict import Verdict, expand_verdict, group_nodes
from tests.substrate.kubernetes.enforcement.conftest import labels


def test_nodes_of_one_shape_are_decided_once_and_refused_in_words_kube_scheduler_can_count() -> None:
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
        "c": "CODE: the node hosts x",
        "d": "RESIDENCY_VIOLATION: the node is in us",
    }
    many = expand_verdict(Verdict(frozenset(), {"a": 'X: node "a" is wrong'}), {"a": ["a", "b"]})
    assert many.unresolvable == {"a": "X: the node is wrong", "b": "X: the node is wrong"}
    # Another mention of the node than the opening one still names each member.
    other = expand_verdict(Verdict(frozenset(), {"a": 'X: pool of "a" is full'}), {"a": ["a", "b"]})
    assert other.unresolvable == {"a": 'X: pool of "a" is full', "b": 'X: pool of "b" is full'}


def test_a_tenant_refused_on_every_node_for_one_reason_gives_kube_scheduler_one_reason_to_count() -> None:
    """The living fleet's saturation run: an enterprise tenant at its entitlement was refused on
    every node of three classes; kube-scheduler's message named each node (tens of KB), and every
    failed attempt wrote it to the pod's status again."""
    reason = (
        'ENTITLEMENT_EXCEEDED: node "{}" has GPU class G2: tenant "delta" holds 0.75 and workload '
        '"delta-jobs/p" asks for 0.5, above the entitlement of 1'
    )
    shapes = {f"n{i}": [f"n{i}", f"n{i}-twin"] for i in range(200)}
    verdict = Verdict(frozenset(), {first: reason.format(first) for first in shapes})
    expanded = expand_verdict(verdict, shapes)
    assert len(expanded.unresolvable) == 400
    assert set(expanded.unresolvable.values()) == {reason.replace('node "{}"', "the node")}

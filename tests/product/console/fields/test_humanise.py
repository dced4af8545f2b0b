"""Values as labelled fields: labels from keys, units from the key's last word, no JSON."""

from __future__ import annotations

from pdp.product.console.fields import label, tree, value_text
from pdp.product.console.fields.humanise import Node


def _texts(node: Node) -> list[str]:
    if node.kind == "fields":
        return [t for f in node.fields for t in [f.label, *_texts(f.node)]]
    if node.kind == "items":
        return [t for i in node.items for t in _texts(i)]
    return [node.text]


def test_labels_are_words() -> None:
    assert label("timer_bundle_request_ns") == "Timer bundle request"
    assert label("gpu_sharing") == "GPU sharing"
    assert label("dedicated_pools") == "Dedicated pools"
    assert label("decision_id") == "Decision id"


def test_units_come_from_the_key() -> None:
    assert value_text("timer_bundle_request_ns", 1379048) == "1.4 ms"
    assert value_text("age_s", 5400) == "1.5 h"
    assert value_text("budget_bytes", 3 * 1024**3) == "3.0 GiB"
    assert value_text("gpu_sharing", False) == "no"
    assert value_text("replicas", 12000) == "12,000"
    assert value_text("x", None) == "none"
    assert value_text("size", 39538) == "38.6 KiB"


def test_a_mapping_becomes_fields_and_never_json() -> None:
    value = {"dedicated_pools": [], "gpu_sharing": False, "pools": ["a", "b"],
             "nested": [{"k": 1}, {"k": 2}], "timer_bundle_request_ns": 1379048}  # fmt: skip
    node = tree(value)
    assert node.kind == "fields"
    assert [f.label for f in node.fields] == [
        "Dedicated pools", "GPU sharing", "Nested", "Pools", "Timer bundle request",
    ]  # fmt: skip
    texts = _texts(node)
    assert "none" in texts and "no" in texts and "a, b" in texts and "1.4 ms" in texts
    assert not any(t.startswith(("{", "[")) for t in texts)
    assert tree({}).text == "none" and tree("plain").text == "plain"

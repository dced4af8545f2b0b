"""Values as a person reads them: a mapping becomes labelled fields, a list becomes items, and
numbers whose key names a unit (`_ns`, `_ms`, `_s`, `_seconds`, `_bytes`, `_mib`) become a
duration or a size in words. Pure: no I/O; the templates render the tree (`_fields.html`)."""

from __future__ import annotations

from pdp.product.console.fields.humanise import Field, Node, label, tree, value_text

__all__ = ["Field", "Node", "label", "tree", "value_text"]

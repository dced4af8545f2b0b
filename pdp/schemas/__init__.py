"""JSON Schemas of the tenant, fleet and intent documents, with compiled validators.

jsonschema (a tenth of a second to import) is loaded when a document is checked by it: a
well-formed intent passes the fastjsonschema check alone, so the one-shot `pdp decide` never
loads it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import fastjsonschema

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema `<name>.schema.json` shipped with the package."""
    text = resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def inlined(name: str, definition: str | None = None) -> dict[str, Any]:
    """The schema (or one of its `$defs`) with its local references replaced by their targets,
    to embed in another document, e.g. the lifecycle's OpenAPI description."""
    schema = copy.deepcopy(load_schema(name))
    defs = schema.pop("$defs", {})
    out: dict[str, Any] = _inline_refs(defs[definition] if definition else schema, defs)
    for key in ("$schema", "$id"):
        out.pop(key, None)
    return out


@cache
def _python_regex(pattern: str) -> re.Pattern[str]:
    # JSON Schema patterns are ECMA-262, where `$` ends the string; Python's `$` also matches
    # before a final newline, so "acme\n" passed `^[a-z0-9]...$` as a tenant name.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + "\\Z"
    return re.compile(pattern)


def _ecma_pattern(_validator: Any, pattern: str, instance: Any, _schema: Any) -> Any:
    from jsonschema import ValidationError

    if isinstance(instance, str) and not _python_regex(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _validator_class() -> Any:
    """Draft 2020-12 with `pattern` anchored as ECMA-262 anchors it (the fast check already does)."""
    from jsonschema import Draft202012Validator, validators

    return validators.extend(Draft202012Validator, {"pattern": _ecma_pattern})  # type: ignore[no-untyped-call]


@cache
def validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
    cls = _validator_class()
    cls.check_schema(schema)
    return cls(schema)  # type: ignore[no-any-return]


@cache
def intent_validator(kind: str) -> Draft202012Validator:
    """The intent schema narrowed to one kind: its payload and its required fields, without the
    if/then chain over every kind, which dominated the cost of validating an intent."""
    return _validator_class()(intent_schema(kind))  # type: ignore[no-any-return]


@cache
def intent_schema(kind: str) -> dict[str, Any]:
    """The schema intent_validator(kind) checks against (its `$defs` inlined)."""
    schema = copy.deepcopy(load_schema("intent"))
    keep = {"kind", "tenant", "actor", "usage", kind}
    schema["properties"] = {k: v for k, v in schema["properties"].items() if k in keep}
    required = ["kind"]
    for branch in schema.pop("allOf"):
        if branch["if"]["properties"]["kind"]["const"] == kind:
            required += branch["then"]["required"]
    schema["required"] = required
    inlined_schema: dict[str, Any] = _inline_refs(schema, schema.pop("$defs"))
    return inlined_schema


# Keywords newer than the drafts fastjsonschema implements: a schema using one is checked by
# jsonschema alone.
_UNSUPPORTED_BY_FAST = {
    "unevaluatedProperties",
    "unevaluatedItems",
    "dependentSchemas",
    "prefixItems",
    "$ref",
}


@cache
def fast_intent_check(kind: str) -> Callable[[Any], bool] | None:
    """A check that accepts exactly what intent_validator(kind) accepts, compiled to Python code
    by fastjsonschema (15 us instead of about 200 per intent), or None where the kind's schema
    uses keywords fastjsonschema does not implement. It only says yes or no: jsonschema stays the
    reference and explains a rejection (tests/test_intents.py compares the two)."""
    schema = _closed_properties(intent_schema(kind))
    if _uses_any(schema, _UNSUPPORTED_BY_FAST):
        return None
    compiled = fastjsonschema.compile({k: v for k, v in schema.items() if k not in ("$schema", "$id")})

    def check(document: Any) -> bool:
        try:
            compiled(document)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return check


# What a branch of `allOf` may hold for its properties to count as evaluated whenever the whole
# object is valid (each branch must then hold, so every property it names was evaluated by it).
_PLAIN_BRANCH = {"type", "required", "properties", "description"}
# Beside `unevaluatedProperties`, keywords that could evaluate properties conditionally.
_CONDITIONAL = {"anyOf", "oneOf", "if", "then", "else", "not", "dependentSchemas", "patternProperties"}


def _closed_properties(node: Any) -> Any:
    """`unevaluatedProperties: false` rewritten as `additionalProperties: false` over the names the
    object and its `allOf` branches declare, where that is exactly equivalent (no conditional
    applicator, branches that only declare properties), so fastjsonschema can check
    admit_workload and place_workload too. Other nodes are left as they are (and then keep the
    kind on jsonschema alone)."""
    if isinstance(node, list):
        return [_closed_properties(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _closed_properties(v) for k, v in node.items()}
    if node.get("unevaluatedProperties") is not False or "additionalProperties" in node:
        return node
    branches = node.get("allOf", [])
    if set(node) & _CONDITIONAL or not all(isinstance(b, dict) and set(b) <= _PLAIN_BRANCH for b in branches):
        return node
    names = dict(node.get("properties", {}))
    for branch in branches:
        for name in branch.get("properties", {}):
            names.setdefault(name, {})
    closed = {k: v for k, v in node.items() if k != "unevaluatedProperties"}
    closed["properties"] = names
    closed["additionalProperties"] = False
    return closed


def _uses_any(node: Any, keywords: set[str]) -> bool:
    if isinstance(node, dict):
        return any(k in keywords or _uses_any(v, keywords) for k, v in node.items())
    if isinstance(node, list):
        return any(_uses_any(v, keywords) for v in node)
    return False


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """Replace local `#/$defs/x` references by their target: resolving a $ref on every validation
    was a quarter of the remaining cost. (The intent schema's definitions are not recursive.)"""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            target = _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
            rest = {k: _inline_refs(v, defs) for k, v in node.items() if k != "$ref"}
            return {**target, **rest} if rest else target
        return {k: _inline_refs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node

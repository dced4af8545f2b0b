"""Turns jsonschema errors into (path, problem) pairs a person can act on."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from jsonschema import ValidationError

# An error names the value it refuses; past this many characters it shows the start and the
# length. A 40 KB string echoed whole made a gRPC INVALID_ARGUMENT exceed the 16 KiB trailer
# limit (the caller saw RESOURCE_EXHAUSTED) and would drown any log line.
MAX_ECHO = 80


def shorten(text: str, limit: int = MAX_ECHO) -> str:
    """`text`, or its first `limit` characters and how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def echo(value: Any) -> str:
    """repr(value), shortened: how an error shows a value it refuses."""
    return shorten(repr(value))


def format_path(parts: Sequence[str | int]) -> str:
    """`["tenant", "namespaces", 0]` -> `tenant.namespaces[0]`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif out:
            out += f".{shorten(str(part))}"
        else:
            out = shorten(str(part))
    return out or "(document)"


def describe(error: ValidationError) -> tuple[list[str | int], str]:
    """The first of `describe_all(error)`: for a caller that reports one problem (an intent)."""
    return describe_all(error)[0]


def describe_all(error: ValidationError) -> list[tuple[list[str | int], str]]:
    """The path of each offending field and what is wrong with it.

    jsonschema reports a missing property at its parent; we name the missing field itself, so
    the path always points at what the author has to write. One `required` error stands for every
    missing field of its object, and one `additionalProperties` (or `unevaluatedProperties`)
    error for every unknown one: each is named, so one run shows the author all of them.
    """
    path: list[str | int] = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [n for n in cast(list[str], error.validator_value) if n not in error.instance]
        if missing:
            return [([*path, name], "is required") for name in missing]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(cast(dict[str, Any], error.schema).get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        if extra:
            return [([*path, name], "is not a known field") for name in extra]
    if error.validator == "unevaluatedProperties":
        unexpected = re.findall(r"'([^']+)'", error.message.split("(", 1)[-1])
        if unexpected:
            return [([*path, name], "is not a known field") for name in unexpected]
    message, instance = error.message, repr(error.instance)
    if len(instance) > MAX_ECHO:
        # jsonschema's messages quote the instance with repr(); keep what follows it.
        message = message.replace(instance, shorten(instance))
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    if error.validator == "pattern" and description:
        # The pattern says it to a machine; the schema's description says it to a person.
        return [(path, f"{echo(error.instance)} does not match the expected form: {description}")]
    return [(path, message)]


def problems(errors: Iterable[ValidationError]) -> list[tuple[str, str]]:
    """Every (field, problem) of a document's errors, in document order, each once: a field
    several schema branches require (tier, in each tier's if/then) fails in each branch."""
    found = leaf_errors(errors)
    out: list[tuple[str, str]] = []
    for error in sorted(found, key=lambda e: [str(p) for p in e.absolute_path]):
        for path, problem in describe_all(error):
            named = (format_path(path), problem)
            if named not in out:
                out.append(named)
    return out


def leaf_errors(errors: Iterable[ValidationError]) -> list[ValidationError]:
    """Flatten if/then and allOf wrappers down to the errors that name a concrete field."""
    out: list[ValidationError] = []
    for error in errors:
        if error.context and error.validator in ("allOf", "anyOf", "oneOf"):
            out.extend(leaf_errors(error.context))
        else:
            out.append(error)
    return out


def sentence(field: str, problem: str) -> str:
    """`tenant.name is required`; `deploy_model.replicas: -2 is less than the minimum of 1`."""
    return f"{field} {problem}" if problem.startswith(("is ", "must ", "should ")) else f"{field}: {problem}"

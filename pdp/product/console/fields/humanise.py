"""A JSON-like value as a tree of labelled fields, each scalar as words (never as JSON)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# Words of keys kept in capitals or spelled out in a label.
_WORDS = {
    "id": "id",
    "ids": "ids",
    "gpu": "GPU",
    "gpus": "GPUs",
    "pdp": "PDP",
    "sla": "SLA",
    "slo": "SLO",
    "mig": "MIG",
    "ns": "",
    "ms": "",
    "s": "",
    "seconds": "",
    "bytes": "",
    "mib": "",
    "url": "URL",
    "api": "API",
    "cel": "CEL",
    "rego": "Rego",
    "sha256": "SHA-256",
}
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "seconds": 1.0}
_SIZE_UNITS = {"bytes": 1, "mib": 1024**2, "gib": 1024**3}


@dataclass(frozen=True)
class Field:
    """One labelled field of a mapping."""

    label: str
    node: Node


@dataclass(frozen=True)
class Node:
    """A value: `text` for a scalar, `fields` for a mapping, `items` for a list."""

    kind: str  # "text", "fields" or "items"
    text: str = ""
    fields: tuple[Field, ...] = field(default_factory=tuple)
    items: tuple[Node, ...] = field(default_factory=tuple)


def label(key: str) -> str:
    """`timer_bundle_request_ns` -> "Timer bundle request"; `gpu_sharing` -> "GPU sharing"."""
    words = [w for w in str(key).replace("-", "_").split("_") if w]
    out = [_WORDS.get(w.lower(), w) for w in words]
    text = " ".join(w for w in out if w)
    return (text[:1].upper() + text[1:]) if text else str(key)


def _unit(key: str) -> str:
    return str(key).lower().rsplit("_", 1)[-1] if "_" in str(key) else ""


def duration_text(seconds: float) -> str:
    """A duration in the largest unit that keeps it at or above 1 (ns, µs, ms, s, min, h, d)."""
    s = abs(seconds)
    sign = "-" if seconds < 0 else ""
    if s == 0:
        return "0 s"
    if s < 1e-6:
        return f"{sign}{s * 1e9:.0f} ns"
    if s < 1e-3:
        return f"{sign}{s * 1e6:.1f} µs"
    if s < 1:
        return f"{sign}{s * 1e3:.1f} ms"
    if s < 60:
        return f"{sign}{s:.2f} s"
    if s < 3600:
        return f"{sign}{s / 60:.1f} min"
    if s < 86400:
        return f"{sign}{s / 3600:.1f} h"
    return f"{sign}{s / 86400:.1f} d"


def size_text(n: float) -> str:
    """A size in bytes in binary units (B, KiB, MiB, GiB, TiB)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def value_text(key: str, value: object) -> str:
    """A scalar in words, its unit taken from the key's last word."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        unit = "bytes" if str(key).lower() == "size" else _unit(key)  # OPA's bundle size is bytes
        if unit in _DURATION_UNITS:
            return duration_text(float(value) * _DURATION_UNITS[unit])
        if unit in _SIZE_UNITS:
            return size_text(float(value) * _SIZE_UNITS[unit])
        if isinstance(value, float):
            return f"{value:,.4g}"
        return f"{value:,}"
    return str(value)


def tree(value: object, key: str = "") -> Node:
    """`value` as a tree the `_fields.html` macro renders: mappings as labelled fields (sorted by
    key), lists as items, an empty mapping or list as the word "none"."""
    if isinstance(value, Mapping):
        if not value:
            return Node("text", text="none")
        pairs = sorted(value.items(), key=lambda kv: str(kv[0]))
        return Node("fields", fields=tuple(Field(label(str(k)), tree(v, str(k))) for k, v in pairs))
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if not value:
            return Node("text", text="none")
        if all(not isinstance(v, Mapping | Sequence) or isinstance(v, str) for v in value):
            return Node("text", text=", ".join(value_text(key, v) for v in value))
        return Node("items", items=tuple(tree(v, key) for v in value))
    return Node("text", text=value_text(key, value))

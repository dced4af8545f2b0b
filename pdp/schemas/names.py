"""Kubernetes object names as the project takes them: a DNS-1123 label (namespaces, tenants,
deployments, the label values and PromQL matchers built from them).

One definition, so that a name refused at one door is refused at all of them; the JSON schemas
spell the same pattern (tests/schemas/test_names.py holds them to it). `fullmatch`, not `match`:
with `match`, `$` also matches before a final newline, so "acme\\n" passed and reached PromQL."""

from __future__ import annotations

import re

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
DNS_LABEL_PATTERN = f"^{DNS_LABEL.pattern}$"  # as the JSON schemas write it


def is_dns_label(name: object) -> bool:
    """Whether `name` is a string Kubernetes takes as a namespace or object name (<= 63 chars)."""
    return isinstance(name, str) and DNS_LABEL.fullmatch(name) is not None

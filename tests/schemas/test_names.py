"""Kubernetes names at every door that takes one: one definition (pdp/schemas/names.py), the
JSON schemas spelling the same pattern, and a final newline refused everywhere (with `re.match`
and `$`, "acme\\n" passed, and went on into PromQL matchers and Kubernetes labels)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException

from pdp.api.token_file import Principal
from pdp.product.console.pages.sla.charts import failed_ratio_promql
from pdp.schemas.names import DNS_LABEL_PATTERN, is_dns_label
from pdp.substrate.gateway.routes import GatewayRef, RouteError, render
from pdp.telemetry.idle import deployment_idleness
from pdp.telemetry.prometheus import PrometheusClient

SCHEMAS = Path(__file__).resolve().parents[2] / "pdp" / "schemas"
NOT_NAMES = ["acme\n", "Acme", "-acme", "acme-", "a" * 64, "acme.prod", "", "acme\nprod", "acme "]


def _patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "pattern" and isinstance(v, str)] + [
            p for v in node.values() for p in _patterns(v)
        ]
    if isinstance(node, list):
        return [p for v in node for p in _patterns(v)]
    return []


def test_the_schemas_spell_the_one_name_pattern() -> None:
    found = [p for f in SCHEMAS.glob("*.schema.json") for p in _patterns(json.loads(f.read_text()))]
    labels = [p for p in found if p.startswith("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?") and p.endswith(")?$")]
    assert labels and set(labels) == {DNS_LABEL_PATTERN}


@pytest.mark.parametrize("name", ["a", "acme", "acme-prod", "a1", "a" * 63])
def test_names_kubernetes_takes_are_names(name: str) -> None:
    assert is_dns_label(name)


@pytest.mark.parametrize("name", [*NOT_NAMES, None, 7])
def test_anything_else_is_not(name: object) -> None:
    assert not is_dns_label(name)


def test_a_principal_with_a_final_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="principal"):
        Principal.parse("tenant:acme\n")


def test_a_tenant_with_a_final_newline_reaches_no_promql() -> None:
    with pytest.raises(HTTPException) as refused:
        failed_ratio_promql("acme\n")
    assert refused.value.status_code == 404


def test_a_namespace_with_a_final_newline_reaches_no_promql() -> None:
    # Refused before any query: the client points nowhere and is never asked.
    nowhere = PrometheusClient("http://127.0.0.1:9", timeout=0.1)
    with nowhere as prometheus, pytest.raises(ValueError, match="namespaces"):
        deployment_idleness(prometheus, ["acme-prod\n"], "llm", 60)


def test_a_route_for_a_tenant_with_a_final_newline_is_refused() -> None:
    gateway = GatewayRef(name="inference", namespace="gateways", domain="llm.example.com")
    with pytest.raises(RouteError, match="tenant"):
        render("acme\n", "acme-prod", "llm", "standard", gateway)

"""The onboarding form's fields as a tenant policy (pdp/product/console/pages/onboarding/form.py), without
a worker: what the admin types becomes the schema's document; what is not a number is a problem
naming its field; every problem of the schema finds its control."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pdp.config import validate_tenant
from pdp.product.console.pages.onboarding import form as tenant_form

ROOT = Path(__file__).resolve().parents[5]
FLEET: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "fleet.yaml").read_text())["fleet"]
CLASSES = tuple(sorted(FLEET["gpu_classes"]))
CONTROLS = tenant_form.controls(tenant_form.groups(CLASSES, FLEET["clusters"]))


def test_a_filled_form_is_a_valid_tenant_document() -> None:
    form = {**tenant_form.BLANK, "name": "newco", "display_name": "New Co", "tier": "enterprise",
            "isolation": "dedicated", "data_residency": "eu-only", "allow_gpu_sharing": "yes",
            "namespaces": "newco-prod, newco-dev", "entitlement_H100-80GB": "4", "sla_class": "throughput",
            "sla_availability": "99.5", "sla_max_batch_size": "16"}  # fmt: skip
    draft = tenant_form.read(form, CLASSES)
    assert draft.problems == []
    assert draft.policy == {
        "name": "newco", "display_name": "New Co", "tier": "enterprise", "isolation": "dedicated",
        "data_residency": "eu-only", "allow_preemption": False, "allow_gpu_sharing": True,
        "namespaces": ["newco-prod", "newco-dev"], "entitlements": {"H100-80GB": 4},
        "sla": {"class": "throughput", "availability": 99.5, "max_batch_size": 16},
    }  # fmt: skip
    assert validate_tenant({"tenant": draft.policy}) == []


def test_what_is_not_a_number_is_named_by_its_field() -> None:
    form = {**tenant_form.BLANK, "name": "newco", "namespaces": "newco", "entitlement_H100-80GB": "four",
            "entitlement_A100-40GB": "2.5", "sla_availability": "nan",
            "sla_latency_p99_ms": "fast"}  # fmt: skip
    problems = {p.control: p.sentence for p in tenant_form.read(form, CLASSES).problems}
    assert problems == {
        "entitlement_H100-80GB": "tenant.entitlements.H100-80GB: 'four' is not a whole number",
        "entitlement_A100-40GB": "tenant.entitlements.A100-40GB: '2.5' is not a whole number",
        "sla_availability": "tenant.sla.availability: 'nan' is not a number",
        "sla_latency_p99_ms": "tenant.sla.latency_p99_ms: 'fast' is not a number",
    }


def test_no_entitlement_at_all_is_a_problem() -> None:
    draft = tenant_form.read({**tenant_form.BLANK, "name": "newco", "namespaces": "newco"}, CLASSES)
    assert [p.sentence for p in draft.problems] == [
        "tenant.entitlements: enter the GPUs of at least one GPU class"
    ]
    assert "entitlements" not in draft.policy


def test_each_schema_problem_finds_its_control() -> None:
    cases = {
        "tenant.name is required": "name",
        "tenant.namespaces[1]: 'B' does not match the expected form": "namespaces",
        "tenant.sla.class is required": "sla_class",
        "tenant.sla.availability: 101 is greater than the maximum of 100": "sla_availability",
        "tenant.entitlements.MI300X: -1 is less than the minimum of 0": "entitlement_MI300X",
        "tenant.entitlements is required": f"entitlement_{CLASSES[0]}",
        "tenant.tier: 'gold' is not one of ['enterprise', 'standard', 'spot']": "tier",
        "something else entirely": "",
    }
    for sentence, control in cases.items():
        assert tenant_form.control_of(sentence, CONTROLS) == control, sentence


def test_residencies_are_the_fleets_jurisdictions_with_their_regions() -> None:
    assert tenant_form.residencies(FLEET["clusters"]) == (
        ("any", "any (eu-central-1, eu-west-1, us-east-1)"),
        ("eu-only", "eu-only (eu-central-1, eu-west-1)"),
        ("us-only", "us-only (us-east-1)"),
    )

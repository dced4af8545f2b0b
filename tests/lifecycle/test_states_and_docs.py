from __future__ import annotations

import pytest

from pdp.lifecycle import diagrams
from pdp.lifecycle.states import DEPLOYMENT, TENANT, IllegalTransition

from .harness import ROOT


def test_illegal_tenant_transition_names_from_to_and_allowed() -> None:
    with pytest.raises(IllegalTransition) as info:
        TENANT.check("acme", "offboarded", "active")
    assert info.value.from_state == "offboarded" and info.value.to_state == "active"
    assert "offboarded -> active" in str(info.value) and "none (final state)" in str(info.value)
    with pytest.raises(IllegalTransition, match="allowed from pending: failed, provisioning"):
        TENANT.check("acme", "pending", "active")


def test_legal_transitions_pass() -> None:
    TENANT.check("acme", "provisioning", "active")
    DEPLOYMENT.check("acme/llm", "running", "drained")


def test_docs_diagrams_are_up_to_date() -> None:
    doc = (ROOT / "docs" / "lifecycle.md").read_text()
    assert diagrams.updated(doc) == doc, "docs/lifecycle.md is stale: run scripts/gen-state-diagrams"
    assert "stateDiagram-v2" in doc and "offboarding --> offboarded" in doc

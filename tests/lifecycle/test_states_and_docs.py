from __future__ import annotations

import pytest

from pdp.lifecycle import diagrams
from pdp.lifecycle.states import DEPLOYMENT, TENANT, IllegalTransition
from tests.lifecycle.harness import ROOT


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


def test_deployment_machine_allows_exactly_what_the_queue_needs() -> None:
    edges = {(src, dst) for src, targets in DEPLOYMENT.transitions.items() for dst in targets}
    assert edges == {
        ("requested", "running"), ("requested", "queued"), ("requested", "rejected"),
        ("queued", "running"), ("queued", "rejected"), ("queued", "drained"),
        ("running", "preempted"), ("running", "drained"),
        ("preempted", "queued"), ("preempted", "drained"),
    }  # fmt: skip
    # A victim is re-queued only through `preempted`; placed only from the queue; ends are final.
    for src, dst in (("running", "queued"), ("preempted", "running"), ("queued", "preempted"),
                     ("drained", "queued"), ("rejected", "queued")):  # fmt: skip
        with pytest.raises(IllegalTransition):
            DEPLOYMENT.check("t/d", src, dst)

"""The pause and resumption records of a workflow's cluster calls (`cluster.unreachable`,
`cluster.reachable`: pdp/lifecycle/services/cluster_reach.py) lead back to the request and to the
decision that allowed the call, as every other record of a workflow step does (issue 28: they
carried the workflow id only). Every cluster call of the worker finds its cluster unreachable once
(PDP_LIFECYCLE_UNREACHABLE_ONCE), so each one is in the trail: onboarding, a deployment, an incident
that re-places it, offboarding."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.lifecycle.harness import (
    Worker,
    audit_records,
    deploy,
    h100_deployment,
    incident_in_state,
    onboard,
    tenant_doc,
)

REACH = ("cluster.unreachable", "cluster.reachable")
NODE = "eu-shared-1"  # in the example fleet's shared H100 pool


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = Worker(tmp_path_factory.mktemp("reach"), cluster_retry_interval="0.05", capacity_retry_schedule="")
    w.start(env={"PDP_LIFECYCLE_UNREACHABLE_ONCE": "1"})
    try:
        yield w
    finally:
        w.stop()


def _trail(worker: Worker) -> list[dict[str, Any]]:
    with worker.client() as c:
        return audit_records(c.get("/v1/audit").text)


def _untraced(trail: list[dict[str, Any]], workflow: str) -> list[tuple[str, str, str]]:
    """The workflow's cluster records whose decision is not one its trail records as decided
    (or, for a call no decision allowed, that do not say so)."""
    decided = {r["decision_id"] for r in trail if r["event"] == "decision" and r["workflow_id"] == workflow}
    return [
        (r["event"], r["detail"]["operation"], r["decision_id"] or r["detail"].get("decision", ""))
        for r in trail
        if r["event"] in REACH
        and r["workflow_id"] == workflow
        and r["decision_id"] not in decided
        and not (not r["decision_id"] and str(r["detail"].get("decision", "")).startswith("none: "))
    ]


def _reach_records(trail: list[dict[str, Any]], workflow: str) -> list[dict[str, Any]]:
    return [r for r in trail if r["event"] in REACH and r["workflow_id"] == workflow]


@pytest.mark.timeout(300)
def test_every_cluster_record_of_a_workflow_carries_its_decision_and_workflow(worker: Worker) -> None:
    token = onboard(worker, tenant_doc("acme-eu", "acmer", ["acmer-prod"], isolation="shared"))
    deployed = deploy(worker, "acmer", h100_deployment("chat", 1))["workflow_id"]
    report = {"node": NODE, "cause": "xid 79", "pods": [{"namespace": "acmer-prod", "pod": "chat-1"}]}
    with worker.client() as c:
        r = c.post("/v1/incidents", json=report)
        assert r.status_code == 202, r.text
    incident = r.json()["incident"]
    incident_in_state(worker, incident, "awaiting_resolution")
    with worker.client() as c:
        r = c.post(f"/v1/incidents/{incident}/resolve", json={"comment": "GPU replaced"})
        assert r.status_code in (200, 202), r.text
    incident_in_state(worker, incident, "resolved")
    with worker.client(token) as c:
        r = c.post("/v1/tenants/acmer/offboard", json={"reason": "contract ended"})
        assert r.status_code == 202, r.text
    offboarding = r.json()["workflow_id"]
    if r.json()["outcome"] == "NEEDS_APPROVAL":  # an enterprise tenant's offboarding is approved
        worker.approve(worker.wait_approval("acmer")["id"])
    assert worker.wait_workflow(offboarding, timeout=120)["output"]["status"] == "offboarded"

    trail = _trail(worker)
    for workflow in ("onboard-acmer", deployed, incident, offboarding):
        records = _reach_records(trail, workflow)
        # Each call paused once and resumed: both records, for every operation it made.
        assert {r["event"] for r in records} == set(REACH), (workflow, records)
        assert _untraced(trail, workflow) == [], workflow
    # Taking a faulty node out of service (and back) acts on a fault report, not on a PDP
    # decision: its records say so. (The dry run's re-placement keeps the placement: no call.)
    node_calls = _reach_records(trail, incident)
    assert {r["detail"]["operation"] for r in node_calls} == {f"incident on node {NODE}"}, node_calls
    assert {r["decision_id"] for r in node_calls} == {""}, node_calls
    assert all(r["detail"]["decision"].startswith(f"none: incident {incident} ") for r in node_calls)
    # So do the incident's own records (opened, cordoned, notified, released), and every other
    # record of the four workflows (the tenant's creation is recorded as the request is accepted,
    # before its decision): each names a decision the trail holds or says none took part.
    decided = {r["decision_id"] for r in trail if r["event"] == "decision"}
    untraced = [
        (r["workflow_id"], r["event"], r["decision_id"], r["detail"].get("decision", ""))
        for r in trail
        if r["workflow_id"]
        and r["decision_id"] not in decided
        and not (not r["decision_id"] and str(r["detail"].get("decision", "")).startswith("none: "))
    ]
    assert untraced == [], untraced
    assert {
        r["detail"]["decision"] for r in trail if r["workflow_id"] == incident and not r["decision_id"]
    } == {f"none: incident {incident} acts on the node for a fault report, not a PDP decision"}

"""The incidents page's timelines on their own: an incident's audit records (in any order) as the
steps of its node's timeline in the order they happened, for the admin and for a tenant (its own
deployments and the node's steps only, none of another incident)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pdp.product.console.pages.incidents.timeline import (
    CORDON,
    DEGRADED,
    FAILED,
    FAULT,
    IMPACT,
    OUT_OF_SERVICE,
    REPLACED,
    RESOLVED,
    RESOLVED_STATE,
    timelines,
)

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
ONE = "incident-eu-shared-1-0a1b2c3d4e"
TWO = "incident-eu-shared-2-5f6a7b8c9d"
OLD = "incident-eu-shared-1-000000aaaa"
TAINT = {"key": "gpupaas.io/incident", "value": "xid-79", "effect": "NoExecute"}
PODS = [{"namespace": "acme-prod", "pod": "chat-1"}, {"namespace": "globex-ml", "pod": "train-1"}]
FAULT_SEEN = {"cause": "xid 79", "xids": [79], "gpus": ["0", "1"], "pods": PODS, "reported_by": "admin"}


def _when(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _r(workflow: str, seconds: float, event: str, tenant: str = "", **detail: Any) -> dict[str, Any]:
    return {"at": _when(seconds).isoformat(), "event": event, "tenant": tenant, "workflow_id": workflow,
            "detail": detail}  # fmt: skip


def _replaced(deployment: str, seconds: float, moved: bool = True) -> dict[str, Any]:
    entry: dict[str, Any] = {"deployment": deployment, "outcome": "ALLOW", "reason_codes": [],
                             "at": _when(seconds).timestamp(), "replaced": moved}  # fmt: skip
    if moved:
        entry["changed"] = ["pools"]
    else:
        entry["reason"] = "placement unchanged"
    return entry


def _incident(incident: str, node: str, start: float, resolved: bool) -> list[dict[str, Any]]:
    on = {"incident": incident, "node": node}
    out = [
        _r(incident, start, "incident.opened", node=node, fault=FAULT_SEEN, actor="admin", opened_at=0),
        _r(incident, start + 1, "node.cordoned", node=node, taint=TAINT, before={}),
        _r(incident, start + 2, "decision", "acme", kind="placement", outcome="ALLOW"),
        _r(incident, start + 3, "incident.degraded", "initech", incident=incident, node=node,
           deployments=[{"deployment": "batch", "action": "preempt", "to_replicas": 0, "gpus": 2}]),
        # re-placed in tier order: acme (enterprise) chat then embed, globex (standard), initech's
        # eval (spot) last; each tenant notified after its own re-placements
        _r(incident, start + 6, "incident.notified", "acme", **on, tier="enterprise",
           fault={"cause": "xid 79"}, replaced=[_replaced("chat", start + 4), _replaced("embed", start + 5)]),
        _r(incident, start + 6.5, "incident.sla_impact", "acme", **on, gpu_minutes=0.2,
           deployments=[]),
        _r(incident, start + 8, "incident.notified", "globex", **on, tier="standard",
           fault={"cause": "xid 79"}, replaced=[_replaced("train", start + 7, moved=False)]),
        _r(incident, start + 8.5, "incident.sla_impact", "globex", **on, gpu_minutes=0.1,
           deployments=[]),
        _r(incident, start + 10, "incident.notified", "initech", **on, tier="spot",
           fault={"cause": "xid 79"}, replaced=[_replaced("eval", start + 9)]),
    ]  # fmt: skip
    if resolved:
        out.append(_r(incident, start + 60, "node.released", node=node, resolved_by="admin",
                      comment="GPU 0 of globex's node replaced", out_of_service_minutes=1.0))  # fmt: skip
    return out


RECORDS = [
    *reversed(_incident(ONE, "eu-shared-1", 1000, resolved=True)),  # out of order
    _r("onboard-acme", 1, "tenant.created", "acme"),
    *_incident(TWO, "eu-shared-2", 2000, resolved=False),
    *_incident(OLD, "eu-shared-1", 0, resolved=True)[::2],  # shuffled, some records only
]
RECORDS[3], RECORDS[9] = RECORDS[9], RECORDS[3]


def test_the_admin_sees_each_nodes_incidents_steps_in_order_open_nodes_first() -> None:
    nodes = timelines(RECORDS, {ONE: "SUCCESS", TWO: "PENDING", OLD: "SUCCESS"})
    assert [(n.node, [i.incident for i in n.incidents]) for n in nodes] == [
        ("eu-shared-2", [TWO]),  # still out of service
        ("eu-shared-1", [ONE, OLD]),  # newest first
    ]
    one = nodes[1].incidents[0]
    assert one.state == RESOLVED_STATE and one.opened_at == _when(1000) and one.resolved_at == _when(1060)
    assert [(s.at, s.kind, s.tier, s.tenant, s.deployment) for s in one.steps] == [
        (_when(1000), FAULT, "", "", ""),
        (_when(1001), CORDON, "", "", ""),
        (_when(1003), DEGRADED, "spot", "initech", "batch"),
        (_when(1004), REPLACED, "enterprise", "acme", "chat"),
        (_when(1005), REPLACED, "enterprise", "acme", "embed"),
        (_when(1006.5), IMPACT, "enterprise", "acme", ""),
        (_when(1007), REPLACED, "standard", "globex", "train"),
        (_when(1008.5), IMPACT, "standard", "globex", ""),
        (_when(1009), REPLACED, "spot", "initech", "eval"),
        (_when(1060), RESOLVED, "", "", ""),
    ]
    said = [s.what for s in one.steps]
    assert said[0] == "XID 79 on GPU 0, 1; pods acme-prod/chat-1, globex-ml/train-1; reported by admin"
    assert said[1] == "node cordoned (unschedulable) and tainted gpupaas.io/incident=xid-79:NoExecute"
    assert said[2] == "preempted and queued to 0 replicas, giving up 2 GPUs"
    assert said[3] == "re-placed (changed: pools)" and said[6] == "not moved: placement unchanged"
    assert said[-1].startswith("node released") and "GPU 0 of globex's node replaced" in said[-1]
    assert nodes[0].incidents[0].state == OUT_OF_SERVICE


def test_a_tenant_sees_the_nodes_steps_and_its_own_only() -> None:
    nodes = timelines(RECORDS, {}, tenant="globex")
    one = next(i for n in nodes for i in n.incidents if i.incident == ONE)
    assert [(s.kind, s.tenant, s.deployment) for s in one.steps] == [
        (FAULT, "", ""),
        (CORDON, "", ""),
        (REPLACED, "globex", "train"),
        (IMPACT, "globex", ""),
        (RESOLVED, "", ""),
    ]
    shown = " ".join(s.what for n in nodes for i in n.incidents for s in i.steps)
    # other tenants' pods (the fault's) and the operator's comment are the admin's only
    assert "acme" not in shown and "initech" not in shown and "pods" not in shown
    assert "comment" not in shown and "replaced\u201d" not in shown and "resolved by" not in shown
    assert one.steps[0].what == "XID 79 on GPU 0, 1"


def test_a_tenant_no_incident_concerned_sees_none() -> None:
    assert timelines(RECORDS, {}, tenant="umbrella") == []
    # a record of the tenant's in no incident (its onboarding) is not an incident either
    assert timelines([r for r in RECORDS if r["tenant"] == "acme" and r["workflow_id"] == "onboard-acme"],
                     {}, tenant="acme") == []  # fmt: skip


def test_an_incident_whose_workflow_ended_in_error_is_failed_not_open() -> None:
    opened = _incident(TWO, "eu-shared-2", 0, resolved=False)[:2]
    [node] = timelines(opened, {TWO: "ERROR"})
    assert node.incidents[0].state == FAILED and not node.incidents[0].resolved_at
    # a resolved one stays resolved whatever its status
    resolved = _incident(ONE, "eu-shared-1", 0, resolved=True)
    assert timelines(resolved, {ONE: "ERROR"})[0].incidents[0].state == RESOLVED_STATE


def test_steps_written_in_the_same_instant_keep_the_workflows_order() -> None:
    same = [
        _r(ONE, 5, "node.released", node="n", out_of_service_minutes=0),
        _r(ONE, 5, "incident.notified", "acme", tier="enterprise", replaced=[]),
        _r(ONE, 5, "node.cordoned", node="n", taint=TAINT),
        _r(ONE, 5, "incident.opened", node="n", fault={"cause": "node condition Ready=False"}),
    ]
    [node] = timelines(same, {})
    assert node.node == "n" and node.incidents[0].steps[0].what == "fault; node condition Ready=False"
    assert [s.kind for s in node.incidents[0].steps] == [FAULT, CORDON, RESOLVED]

"""The waste page's reclaims on their own: audit records grouped per reclaim workflow, each in the
state its records (or its workflow's DBOS status) show, in flight first, newest first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pdp.product.console.pages.waste.reclaims import (
    CANCELLED,
    DONE,
    FAILED,
    IN_FLIGHT,
    NOTIFIED_ONLY,
    REFUSED,
    reclaims,
)

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


def _r(workflow: str, minute: float, event: str, **detail: Any) -> dict[str, Any]:
    tenant = [*workflow.split(":"), "", ""][1]
    at = (T0 + timedelta(minutes=minute)).isoformat()
    return {"at": at, "event": event, "tenant": tenant, "workflow_id": workflow, "detail": detail}


def _decided(workflow: str, minute: float, gpus: int, replicas: int) -> dict[str, Any]:
    payload = {"deployment": workflow.split(":")[2], "gpu_class": "H100-80GB", "gpus_per_replica": 1,
               "current_replicas": replicas, "idle_gpus": gpus}  # fmt: skip
    return _r(workflow, minute, "decision", kind="reclaim", outcome="ALLOW", payload=payload)


def _notified(workflow: str, minute: float, action: str = "reclaim", grace: float = 300) -> dict[str, Any]:
    return _r(
        workflow, minute, "reclaim.notified", deployment=workflow.split(":")[2], action=action,
        grace_seconds=grace, target_replicas=0, release_gpus=2, protected_replicas=0,
        current_replicas=2, idle_gpus=2, gpu_class="H100-80GB", pools=["eu-h100-shared"],
        notice=["..."], codes=["RECLAIM_SPOT"],
    )  # fmt: skip


APPLIED = "reclaim:spot:batch:1"
CANCELS = "reclaim:spot:work:1"
FAILS = "reclaim:std:train:1"
WAITS = "reclaim:spot:etl:1"
CRASHED = "reclaim:spot:etl:2"  # a later reclaim of etl, whose workflow ended in error
ONLY = "reclaim:ent:eval:1"
REFUSES = "reclaim:std:gone:1"

RECORDS = [
    # out of order, interleaved, with records of other workflows and the reclaim's scale
    _r(
        APPLIED,
        6,
        "reclaim.applied",
        deployment="batch",
        from_replicas=2,
        target_replicas=0,
        scale="applied",
        scale_decision_id="d2",
    ),
    _decided(APPLIED, 0, 2, 2),
    _notified(APPLIED, 0.1),
    _r(APPLIED, 5.5, "decision", kind="scale", outcome="ALLOW", payload={}),
    _decided(CANCELS, 1, 2, 2),
    _notified(CANCELS, 1.1),
    _r(
        CANCELS,
        6.2,
        "reclaim.cancelled",
        deployment="work",
        reason="1 GPUs were put to work during the grace of 300 s",
    ),
    _r("onboard-x", 2, "tenant.created"),
    _decided(FAILS, 2, 2, 2),
    _notified(FAILS, 2.1, action="scale_to_minimum", grace=3600),
    _r(
        FAILS,
        62.5,
        "reclaim.failed",
        deployment="train",
        from_replicas=2,
        target_replicas=1,
        scale="failed",
        scale_decision_id="",
    ),
    _notified(WAITS, 30.1),
    _decided(WAITS, 30, 2, 2),
    _decided(CRASHED, 40, 2, 2),
    _notified(CRASHED, 40.1),
    _notified(ONLY, 3.1, action="notify", grace=0),
    _decided(ONLY, 3, 2, 2),
    _r(
        REFUSES,
        4,
        "reclaim.refused",
        deployment="gone",
        reason="deployment 'gone' of tenant 'std' is not running",
    ),
    _r("reclaim:spot:batch:1:scale", 5.5, "decision", kind="scale", outcome="ALLOW", payload={}),
]
STATUSES = {APPLIED: "SUCCESS", CANCELS: "SUCCESS", FAILS: "SUCCESS", WAITS: "PENDING", CRASHED: "ERROR",
            ONLY: "SUCCESS", REFUSES: "SUCCESS"}  # fmt: skip


def test_each_reclaim_is_one_row_in_the_state_its_records_show_in_flight_first_newest_first() -> None:
    got = reclaims(RECORDS, STATUSES)
    assert [(r.workflow_id, r.state) for r in got] == [
        (WAITS, IN_FLIGHT),
        (CRASHED, FAILED),
        (REFUSES, REFUSED),
        (ONLY, NOTIFIED_ONLY),
        (FAILS, FAILED),
        (CANCELS, CANCELLED),
        (APPLIED, DONE),
    ]


def test_what_was_reclaimed_where_and_when() -> None:
    got = {r.workflow_id: r for r in reclaims(RECORDS, STATUSES)}
    done = got[APPLIED]
    assert (done.tenant, done.deployment, done.gpu_class, done.pools) == ("spot", "batch", "H100-80GB",
                                                                          ("eu-h100-shared",))  # fmt: skip
    assert (done.release_gpus, done.idle_gpus, done.from_replicas, done.target_replicas) == (2, 2, 2, 0)
    assert done.started_at == T0 and done.notified_at == T0 + timedelta(minutes=0.1)
    assert done.grace_ends_at == T0 + timedelta(minutes=0.1, seconds=300)
    assert done.ended_at == T0 + timedelta(minutes=6) and done.reason == ""
    assert "put to work" in got[CANCELS].reason and got[CANCELS].ended_at == T0 + timedelta(minutes=6.2)
    assert got[FAILS].reason == "the scale was not applied (failed)" and got[FAILS].target_replicas == 0
    # in flight: notified, its grace not over; nothing ended
    waiting = got[WAITS]
    assert waiting.ended_at is None and waiting.grace_ends_at == T0 + timedelta(minutes=30.1, seconds=300)
    # a notice only has no grace to wait out
    assert got[ONLY].grace_ends_at is None and got[ONLY].ended_at is None
    assert "ERROR" in got[CRASHED].reason
    assert "not running" in got[REFUSES].reason and got[REFUSES].notified_at is None


def test_a_workflow_pending_without_records_past_its_decision_is_in_flight() -> None:
    [deciding] = reclaims([_decided(WAITS, 0, 2, 2)], {})
    assert deciding.state == IN_FLIGHT and deciding.notified_at is None and deciding.idle_gpus == 2


def test_a_notice_only_that_crashed_is_still_failed_and_a_finished_one_is_not() -> None:
    only = [_decided(ONLY, 3, 2, 2), _notified(ONLY, 3.1, action="notify", grace=0)]
    assert reclaims(only, {ONLY: "SUCCESS"})[0].state == NOTIFIED_ONLY
    assert reclaims(only, {ONLY: "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})[0].state == FAILED
    # a reclaim whose last record is written stays in its state whatever DBOS says
    applied = [r for r in RECORDS if r["workflow_id"] == APPLIED]
    assert reclaims(applied, {APPLIED: "ERROR"})[0].state == DONE

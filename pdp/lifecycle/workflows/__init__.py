"""The durable workflows (DBOS Transact), one concept per module:

- steps: the steps they share (decide, record, transition, apply/delete objects, publish);
- serial: the tenant's serialization, where every change is decided against the usage of its
  moment and applied; approvals wait outside it;
- approvals: waiting for a human, grants, the decision a request shows while it runs;
- decide: deciding a change from the store as it is inside the serialization;
- onboarding, changes (deploy, scale, batch size, GPU sharing, quotas), sla, preemption (capacity
  exhaustion), queue_retry, offboarding, reclaim (idle GPUs, issue 18);
- incident: a faulty node cordoned, its deployments re-placed by tier, released when resolved;
- sla_escalation: a deployment burning its SLA's error budget re-placed or credited (issue 18).
- drift: a running workload the current revision would refuse or place elsewhere, remediated by
  tier (issue 15).

Steps are checkpointed, so after a crash a workflow resumes after its last completed step; steps
retry with backoff, and a provisioning step that keeps failing runs the compensations of the steps
before it (saga). Deployments become workload objects through pdp/lifecycle/services/realize/.
"""

from __future__ import annotations

import json
from typing import Any

from pdp.lifecycle.workflows.approvals import APPROVAL_TOPIC, DECISION_EVENT
from pdp.lifecycle.workflows.changes import request_workflow
from pdp.lifecycle.workflows.drift import drift_remediation_workflow
from pdp.lifecycle.workflows.incident import incident_workflow
from pdp.lifecycle.workflows.offboarding import offboard_workflow
from pdp.lifecycle.workflows.onboarding import onboard_workflow
from pdp.lifecycle.workflows.preemption import capacity_workflow
from pdp.lifecycle.workflows.queue_retry import (
    CAPACITY_QUEUE,
    RETRY_SCHEDULE,
    retry_queue_workflow,
    scheduled_retry_workflow,
)
from pdp.lifecycle.workflows.reclaim import reclaim_workflow
from pdp.lifecycle.workflows.rollout import rollback_workflow, rollout_workflow
from pdp.lifecycle.workflows.serial import QUEUE
from pdp.lifecycle.workflows.sla import sla_workflow
from pdp.lifecycle.workflows.sla_escalation import sla_escalation_workflow
from pdp.lifecycle.workflows.steps import progress

__all__ = [
    "APPROVAL_TOPIC",
    "CAPACITY_QUEUE",
    "DECISION_EVENT",
    "QUEUE",
    "RETRY_SCHEDULE",
    "capacity_workflow",
    "drift_remediation_workflow",
    "incident_workflow",
    "offboard_workflow",
    "onboard_workflow",
    "progress",
    "reclaim_workflow",
    "request_workflow",
    "retry_queue_workflow",
    "rollback_workflow",
    "rollout_workflow",
    "scheduled_retry_workflow",
    "sla_escalation_workflow",
    "sla_workflow",
    "to_json",
]


def to_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))

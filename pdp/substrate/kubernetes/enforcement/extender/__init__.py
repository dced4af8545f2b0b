"""The kube-scheduler extender: node-level placement policy (residency, dedicated pools, node
occupancy, sharing) decided per scheduling cycle with one `place_workload` decision.

Policy rejections go to FailedAndUnresolvableNodes: preempting pods cannot make a node of the
wrong region or another tenant's pool acceptable, so the scheduler must not try. A node the
scheduler's own plugins find full is never shown to the extender's filter, so the scheduler may
still pick it for preemption: the preempt verb asks the policy about each such candidate as it
would be once its victims are gone, and keeps only those it accepts.

`scheduler_extender` answers the verbs, `server` serves them over HTTP(S); `wire` and `preemption`
read and answer kube-scheduler's arguments, `verdict` reads the policy's decision, `question` asks it.
"""

from pdp.substrate.kubernetes.enforcement.extender.scheduler_extender import (
    MAX_NODES,
    MAX_SCORE,
    SchedulerExtender,
)
from pdp.substrate.kubernetes.enforcement.extender.server import ExtenderServer
from pdp.substrate.kubernetes.enforcement.extender.verdict import (
    Verdict,
    expand_verdict,
    group_nodes,
    place_intent,
    verdict_from_decision,
)
from pdp.substrate.kubernetes.enforcement.extender.wire import BadArgs, ClusterView

__all__ = [
    "MAX_NODES",
    "MAX_SCORE",
    "BadArgs",
    "ClusterView",
    "ExtenderServer",
    "SchedulerExtender",
    "Verdict",
    "expand_verdict",
    "group_nodes",
    "place_intent",
    "verdict_from_decision",
]

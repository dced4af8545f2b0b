"""Deployments realized as workload objects (what the workflow steps run; their re-placement is
pdp/lifecycle/services/replacement.py).

Every deployment that runs has one apps/v1 Deployment in its tenant's first namespace, rendered
from the PDP's placement decision (pdp/substrate/kubernetes/workload.py) and applied through the
adapter of one cluster: a multi-cluster worker chooses it among the decision's eligible clusters
the tenant is realized in, those where it fits first in the policy's order (pdp/lifecycle/clusters.py),
and keeps it there while it stays eligible.
The object and the placement it was rendered from are kept in the store, so scaling or a batch
size change re-applies the same placement, preemption scales it to 0 (resumable), offboarding
deletes it, and a policy change (SLA, GPU sharing) can ask the PDP again and re-apply only the
workloads whose placement moved. Each function is idempotent: applies are server-side, audit
records are keyed by workflow step.

The modules: deployments.py (the store's deployments, a decision's links), cluster_choice.py (the
cluster a workload object is kept in or goes to, and a call made there), workloads.py (applying,
scaling and deleting the objects), policy.py (re-applying what follows a tenant's policy). Their
public names are here, for the workflows that call them as `realize.NAME`.
"""

from pdp.lifecycle.services.realize.cluster_choice import (
    NoEligibleCluster,
    choose_cluster,
    cluster_of,
    in_cluster,
    placed_in,
)
from pdp.lifecycle.services.realize.deployments import deployment_of, links, running_deployment
from pdp.lifecycle.services.realize.policy import apply_policy
from pdp.lifecycle.services.realize.workloads import (
    apply_placement,
    apply_workload,
    delete_workloads,
    evict,
    leave,
    reapply_workload,
)

__all__ = [
    "NoEligibleCluster",
    "apply_placement",
    "apply_policy",
    "apply_workload",
    "choose_cluster",
    "cluster_of",
    "delete_workloads",
    "deployment_of",
    "evict",
    "in_cluster",
    "leave",
    "links",
    "placed_in",
    "reapply_workload",
    "running_deployment",
]

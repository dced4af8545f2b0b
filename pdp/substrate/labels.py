"""Names every substrate shares: the labels and taints the policies use (policies/gpupaas/lib), the
tenant label the platform finds a tenant's objects by, the tier catalog's priority classes, and the
queue a Kubernetes workload waits in under Kueue."""

from __future__ import annotations

TENANT_LABEL = "gpupaas.io/tenant"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "gpupaas"
# Node labels and taint the policies read (listed in policies/gpupaas/lib/lib.rego, "Nodes and
# labels") and of the fleet's pools.
REGION_LABEL = "topology.kubernetes.io/region"
POOL_LABEL = "gpupaas.io/pool"
DEDICATED_TENANT_LABEL = "gpupaas.io/dedicated-tenant"
DEDICATED_TAINT = "gpupaas.io/dedicated"
# The tier catalog's priority classes (lib.tiers) and their values, highest tier first.
TIER_PRIORITY = {"enterprise": 3000, "standard": 2000, "spot": 1000}
TIER_PRIORITY_CLASS = {tier: f"gpupaas-{tier}" for tier in TIER_PRIORITY}
# Kueue's queue label, and the LocalQueue the platform makes in each tenant namespace: Kubernetes
# workloads name it (kubernetes/workload.py), Kueue renders it (kueue/objects.py).
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
LOCAL_QUEUE = "default"

"""The PDP's Prometheus metrics, all defined in this package, and what records them.

Conventions (Gatekeeper's, docs/metrics.md): every name has the component prefix
`gpupaas_pdp_` and a unit suffix (`_total`, `_seconds`); label values come only from closed sets
(outcome, intent kind, entry point, a reason code of the policy's catalogue, an engine error kind),
never a tenant, namespace, object name or decision id: those go to the decision log. Metrics carry
no access control, and per-object labels are how Kyverno and Gatekeeper users got 10^5-10^6 series.
The one exception, `TenantCollector` (`tenants`: entitlements and queue per tenant, for the
console's charts), is in a registry of its own, served only to a metrics or the admin token.

Decisions are recorded in one place, `DecisionPoint` (pdp/point.py), whatever the entry point
(`decision_point`, the bundle decided on: `bundles`); the webhook and the extender add their request
counts and latencies in their handlers (`enforcement`); the lifecycle's workflow and approval
gauges are read from its database when scraped (`lifecycle`), the last drift audit's kept by the
process that ran it (`drift`).
"""

from pdp.metrics.bundles import (
    BUNDLE_ACTIVATED,
    BUNDLE_AGE,
    BUNDLE_FAILURES,
    BUNDLE_INFO,
    BundleAge,
    bundle_refused,
)
from pdp.metrics.conventions import LATENCY_BUCKETS, PREFIX
from pdp.metrics.decision_point import (
    DECISION_DURATION,
    DECISION_REASONS,
    DECISIONS,
    ENGINE_CODES,
    ENGINE_ERRORS,
    ENTRY_POINTS,
    MAX_CATALOGUE,
    OTHER,
    DecisionMetrics,
    decisions,
    policy_codes,
)
from pdp.metrics.drift import DriftCollector, drift_audited
from pdp.metrics.enforcement import (
    EXTENDER_DURATION,
    EXTENDER_REQUESTS,
    WEBHOOK_DURATION,
    WEBHOOK_REQUESTS,
    extender_answered,
    timed_since,
    webhook_answered,
)
from pdp.metrics.lifecycle import (
    LifecycleCollector,
    PendingApprovals,
    WorkflowCounts,
    register_lifecycle,
)
from pdp.metrics.shadow import SHADOW_DISAGREEMENTS, SHADOW_DROPPED, SHADOW_EVALUATIONS
from pdp.metrics.tenants import TenantCollector, TenantFigures, tenant_registry

__all__ = [
    "BUNDLE_ACTIVATED",
    "BUNDLE_AGE",
    "BUNDLE_FAILURES",
    "BUNDLE_INFO",
    "DECISIONS",
    "DECISION_DURATION",
    "DECISION_REASONS",
    "ENGINE_CODES",
    "ENGINE_ERRORS",
    "ENTRY_POINTS",
    "EXTENDER_DURATION",
    "EXTENDER_REQUESTS",
    "LATENCY_BUCKETS",
    "MAX_CATALOGUE",
    "OTHER",
    "PREFIX",
    "SHADOW_DISAGREEMENTS",
    "SHADOW_DROPPED",
    "SHADOW_EVALUATIONS",
    "WEBHOOK_DURATION",
    "WEBHOOK_REQUESTS",
    "BundleAge",
    "DecisionMetrics",
    "DriftCollector",
    "LifecycleCollector",
    "PendingApprovals",
    "TenantCollector",
    "TenantFigures",
    "WorkflowCounts",
    "bundle_refused",
    "decisions",
    "drift_audited",
    "extender_answered",
    "policy_codes",
    "register_lifecycle",
    "tenant_registry",
    "timed_since",
    "webhook_answered",
]

# METADATA
# title: Decision
# description: >-
#   The entrypoint: aggregates the reasons, warnings, constraints and obligations of every area
#   into one decision. `result` is defined for any input.
package gpupaas.decision

import data.gpupaas.admission
import data.gpupaas.degradation
import data.gpupaas.drift
import data.gpupaas.infrastructure
import data.gpupaas.isolation
import data.gpupaas.lib
import data.gpupaas.placement
import data.gpupaas.preemption
import data.gpupaas.reclaim
import data.gpupaas.residency
import data.gpupaas.sharing
import data.gpupaas.sla_breach
import data.gpupaas.tenancy

_policy := "gpupaas.decision"

# METADATA
# title: Unsupported intent
# description: The intent's kind is not one the policies decide.
# custom:
#   code: INTENT_UNSUPPORTED
deny contains lib.reason(rego.metadata.rule(), _policy, msg) if {
	not lib.kind in lib.intent_kinds
	msg := lib.message([`intent kind "`, lib.kind, `" is not supported (supported: [`, lib.names(lib.intent_kinds), "])"])
}

# The areas every rule of which needs a kind are evaluated only for that kind: infrastructure
# (change_capacity), tenancy (create_tenant, update_quotas, change_sla), isolation (workloads),
# reclaim (reclaim), degradation (degrade), preemption (workloads and preempt) and placement's denials (deploy_model, scale, place_workload). Their rules could not fire for any other kind, so the decision
# reclaim (reclaim), sla_breach (sla_breach), preemption (workloads and preempt) and placement's denials (deploy_model, scale, place_workload). Their rules could not fire for any other kind, so the decision
# is the same; one equality on input.kind per rule lets OPA's indexer pick the one rule of the kind
# (docs/performance.md).
default _kind_deny := set()

_kind_deny := infrastructure.deny if input.kind == "change_capacity"

_kind_deny := placement.deny if input.kind == "deploy_model"

_kind_deny := placement.deny if input.kind == "scale"

_kind_deny := tenancy.deny if input.kind == "create_tenant"

_kind_deny := tenancy.deny if input.kind == "update_quotas"

_kind_deny := tenancy.deny if input.kind == "change_sla"

# every isolation rule judges the workload of an admit_workload or place_workload intent, and so
# do the preemption rules but for the victims of a preempt intent
_kind_deny := isolation.deny | preemption.deny if input.kind == "admit_workload"

_kind_deny := union({isolation.deny, preemption.deny, placement.deny}) if input.kind == "place_workload"

_kind_deny := preemption.deny if input.kind == "preempt"

_kind_deny := reclaim.deny if input.kind == "reclaim"

_kind_deny := degradation.deny if input.kind == "degrade"
_kind_deny := sla_breach.deny if input.kind == "sla_breach"

default _kind_approval := set()

_kind_approval := infrastructure.approval if input.kind == "change_capacity"

_kind_approval := tenancy.approval if input.kind == "create_tenant"

_kind_approval := tenancy.approval if input.kind == "update_quotas"

_kind_approval := tenancy.approval if input.kind == "change_sla"

default _kind_constraints := {}

_kind_constraints := preemption.constraints if input.kind == "preempt"

_kind_constraints := reclaim.constraints if input.kind == "reclaim"

_kind_constraints := degradation.constraints if input.kind == "degrade"
_kind_constraints := sla_breach.constraints if input.kind == "sla_breach"
_kind_constraints := drift.constraints if input.kind == "remediate_drift"

_deny := union({
	deny,
	admission.deny,
	residency.deny,
	sharing.deny,
	_kind_deny,
})

# residency warns only about the workload of an admit_workload intent
default _warnings := []

_warnings := lib.sorted_reasons(residency.warn) if {
	input.kind == "admit_workload"
	count(residency.warn) > 0 # most admissions are warned of nothing: the default, without sorting
}

# a reclaim decision's warnings are the notice the tenant is sent (gpupaas.reclaim)
_warnings := lib.sorted_reasons(reclaim.warn) if input.kind == "reclaim"

# a degradation's warnings are its notices, in the order of the plan's codes (gpupaas.degradation)
_warnings := lib.sorted_reasons(degradation.warn) if input.kind == "degrade"

# an SLA breach decision's warnings are the notice the tenant is sent (gpupaas.sla_breach)
_warnings := lib.sorted_reasons(sla_breach.warn) if input.kind == "sla_breach"

# a drift remediation's warnings are the notice the tenant is sent (gpupaas.drift)
_warnings := lib.sorted_reasons(drift.warn) if input.kind == "remediate_drift"

_approval := admission.approval | _kind_approval

# whether the decision denies, or else needs approval: decided once for the outcome, the reasons
# and the obligations
_denies if count(_deny) > 0

_needs_approval if count(_approval) > 0

_outcome := "DENY" if {
	_denies
} else := "NEEDS_APPROVAL" if {
	_needs_approval
} else := "ALLOW"

_reasons := lib.sorted_reasons(_deny) if {
	_denies
} else := lib.sorted_reasons(_approval) if {
	_needs_approval
} else := []

# Placement's and isolation's constraints: for an admission they depend only on its tenant and
# the GPU class it pins, for a deployment on its tenant, class and sharing mode unless it names a
# cluster. The bundle build stores them per tenant (gpupaas.derived) and a decision reads them
# there, computing them otherwise: the lookup replaces a third of the evaluation of either
# (docs/performance.md). An area whose constraints depend on more of the intent adds them to
# _constraints below, not here.
tenant_constraints := object.union(placement.constraints, isolation.constraints)

_tenant_constraints := constraints if {
	input.kind == "admit_workload"
	not input.admit_workload.cluster # (no field of a workload; it would narrow the clusters)
	i := data.gpupaas.index.workload_constraints[lib.tenant_name][_pinned_class_key]
	constraints := data.gpupaas.index.constraint_sets[i]
} else := constraints if {
	input.kind == "deploy_model"
	not input.deploy_model.cluster
	deploy := input.deploy_model
	i := data.gpupaas.index.deploy_constraints[input.tenant][deploy.gpu_class][object.get(deploy, "sharing", "none")]
	constraints := data.gpupaas.index.constraint_sets[i]
} else := tenant_constraints

_constraints := object.union(_tenant_constraints, _kind_constraints)

_pinned_class_key := lib.pinned_class if {
	lib.pinned_class
} else := "*"

# only offboarding has obligations: the kind first, so OPA's indexer skips the rule for the others
# instead of deciding whether the decision denies
default _obligations := []

_obligations := admission.obligations if {
	input.kind == "offboard_tenant"
	not _denies
}

default _tenant := ""

_tenant := lib.tenant_name

# a create_tenant intent names no tenant by lib.tenant_name: the kind, which the indexer resolves,
# rather than testing lib.tenant_name again
_tenant := lib.new_tenant.name if input.kind == "create_tenant"

default _bundle_revision := ""

_bundle_revision := data.gpupaas.bundle.revision

# METADATA
# title: Decision
# description: The decision of the intent; the PDP adds decision_id, decided_at and evaluation_ms.
# entrypoint: true
result := {
	"outcome": _outcome,
	"reasons": _reasons,
	"warnings": _warnings,
	"constraints": _constraints,
	"obligations": _obligations,
	"bundle_revision": _bundle_revision,
	"tenant": _tenant,
}

# METADATA
# title: Batch decision
# description: >-
#   The decision of every intent in input.intents, in order, evaluated in one query so that
#   every decision of a batch comes from the same bundle revision.
# entrypoint: true
batch := [decision |
	some intent in input.intents
	decision := result with input as intent
]

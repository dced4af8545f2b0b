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

# METADATA
# title: Unsupported intent
# description: The intent's kind is not one the policies decide.
# custom:
#   code: INTENT_UNSUPPORTED
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.decision"} if {
	# lib.intent_kinds written out: a constant set costs every decision nothing to build, where the
	# reference to the rule cost each ~13 allocations (decision_test holds the two to the same kinds)
	not lib.kind in {
		"create_tenant", "deploy_model", "scale", "change_batch_size", "request_gpu_sharing",
		"update_quotas", "offboard_tenant", "admit_workload", "place_workload", "preempt",
		"change_sla", "change_capacity", "reclaim", "degrade", "sla_breach", "remediate_drift",
	}
	msg := lib.message([`intent kind "`, lib.kind, `" is not supported (supported: [`, lib.names(lib.intent_kinds), "])"])
	meta := rego.metadata.rule()
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

# The approvals of the kinds that can need one, picked by the indexer like _kind_deny: admission's
# rules ask for approval of a deployment or scale above the entitlement, a quota increase and an
# offboarding, and no other kind (admission_test holds them to none for the rest); every other
# kind, admissions first, reads the empty default instead of evaluating them (-60 allocations).
default _approval := set()

_approval := admission.approval if input.kind in {"deploy_model", "scale", "offboard_tenant"}

_approval := admission.approval | tenancy.approval if input.kind == "update_quotas"

_approval := tenancy.approval if input.kind in {"create_tenant", "change_sla"}

_approval := infrastructure.approval if input.kind == "change_capacity"

default _kind_constraints := {}

_kind_constraints := preemption.constraints if input.kind == "preempt"

_kind_constraints := reclaim.constraints if input.kind == "reclaim"

_kind_constraints := degradation.constraints if input.kind == "degrade"
_kind_constraints := sla_breach.constraints if input.kind == "sla_breach"
_kind_constraints := drift.constraints if input.kind == "remediate_drift"

# binary unions rather than union() of a set of the five sets, which built that set first (-7
# allocations on every decision)
_deny := (((deny | admission.deny) | residency.deny) | sharing.deny) | _kind_deny

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
} else := object.union(object.remove(constraints, ["eligible_clusters", "node_affinity"]), _narrowed(constraints, cluster)) if {
	input.kind == "deploy_model"
	deploy := input.deploy_model
	cluster := deploy.cluster
	i := data.gpupaas.index.deploy_constraints[input.tenant][deploy.gpu_class][object.get(deploy, "sharing", "none")]
	constraints := data.gpupaas.index.constraint_sets[i]
} else := tenant_constraints

# A deployment naming a cluster reads the table of its tenant, class and sharing mode too (above),
# narrowed as placement narrows lib.target_clusters to the cluster named: the eligible clusters are
# that cluster if the table lists it, else none, and the region term of the node affinity names
# that cluster's region, or goes when no cluster is left. Computing them instead cost such a
# deployment ~470 of its ~1,800 allocations (docs/performance.md, "Fifth pass").
_narrowed(constraints, cluster) := {"eligible_clusters": [cluster], "node_affinity": affinity} if {
	cluster in constraints.eligible_clusters
	terms := constraints.node_affinity
	affinity := sort({_to_region(term, lib.clusters[cluster].region) | some term in terms})
} else := {"eligible_clusters": [cluster]} if {
	cluster in constraints.eligible_clusters
} else := {"eligible_clusters": [], "node_affinity": affinity} if {
	affinity := [term | some term in constraints.node_affinity; term.key != "topology.kubernetes.io/region"]
	count(affinity) > 0
} else := {"eligible_clusters": []}

_to_region(term, region) := object.union(term, {"values": [region]}) if {
	term.key == "topology.kubernetes.io/region"
} else := term

# the kinds of _kind_constraints add theirs; the others, which have none, skip its default and the
# union (-12 allocations on every such decision; decision_test holds the kinds to its rules)
_constraints := object.union(_tenant_constraints, _kind_constraints) if {
	input.kind in {"preempt", "reclaim", "degrade", "sla_breach", "remediate_drift"}
} else := _tenant_constraints

_pinned_class_key := lib.pinned_class if {
	lib.pinned_class
} else := "*"

# only offboarding has obligations, and a decision that denies has none (result: the DENY document
# names none, the others read this)
default _obligations := []

_obligations := admission.obligations if input.kind == "offboard_tenant"

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
	"outcome": "DENY",
	"reasons": sort(_deny), # lib.sorted_reasons, without the call
	"warnings": _warnings,
	"constraints": _constraints,
	"obligations": [],
	"bundle_revision": _bundle_revision,
	"tenant": _tenant,
} if {
	count(_deny) > 0
} else := {
	"outcome": "NEEDS_APPROVAL",
	"reasons": sort(_approval),
	"warnings": _warnings,
	"constraints": _constraints,
	"obligations": _obligations,
	"bundle_revision": _bundle_revision,
	"tenant": _tenant,
} if {
	count(_approval) > 0
} else := {
	"outcome": "ALLOW",
	"reasons": [],
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

# METADATA
# title: Decision
# description: >-
#   The entrypoint: aggregates the reasons, warnings, constraints and obligations of every area
#   into one decision. `result` is defined for any input.
package gpupaas.decision

import data.gpupaas.admission
import data.gpupaas.infrastructure
import data.gpupaas.isolation
import data.gpupaas.lib
import data.gpupaas.placement
import data.gpupaas.preemption
import data.gpupaas.residency
import data.gpupaas.sharing
import data.gpupaas.tenancy

_policy := "gpupaas.decision"

# METADATA
# title: Unsupported intent
# description: The intent's kind is not one the policies decide.
# custom:
#   code: INTENT_UNSUPPORTED
deny contains lib.reason(rego.metadata.rule(), _policy, msg) if {
	not lib.kind in lib.intent_kinds
	msg := sprintf(`intent kind "%s" is not supported (supported: [%s])`, [lib.kind, lib.names(lib.intent_kinds)])
}

# The areas every rule of which names the kinds it decides are evaluated only for those kinds:
# infrastructure (change_capacity), tenancy (create_tenant, update_quotas, change_sla) and preemption
# (workloads and preempt). The other areas run for every intent. Their rules could not fire for any
# other kind, so the decision is the same; a deploy_model or admit_workload decision no longer pays
# for them (docs/performance.md).
_tenancy_kinds := {"create_tenant", "update_quotas", "change_sla"}

_preemption_kinds := {"admit_workload", "place_workload", "preempt"}

default _kind_deny := set()

_kind_deny := infrastructure.deny if input.kind == "change_capacity"

_kind_deny := tenancy.deny if input.kind in _tenancy_kinds

_kind_deny := preemption.deny if input.kind in _preemption_kinds

default _kind_approval := set()

_kind_approval := infrastructure.approval if input.kind == "change_capacity"

_kind_approval := tenancy.approval if input.kind in _tenancy_kinds

default _kind_constraints := {}

_kind_constraints := preemption.constraints if input.kind in _preemption_kinds

# every isolation rule judges the workload of an admit_workload or place_workload intent
default _isolation_deny := set()

_isolation_deny := isolation.deny if input.kind in lib.workload_kinds

_deny := union({
	deny,
	admission.deny,
	_isolation_deny,
	placement.deny,
	residency.deny,
	sharing.deny,
	_kind_deny,
})

# residency warns only about the workload of an admit_workload intent
default _warnings := []

_warnings := lib.sorted_reasons(residency.warn) if input.kind == "admit_workload"

_approval := admission.approval | _kind_approval

default _outcome := "ALLOW"

_outcome := "DENY" if count(_deny) > 0

_outcome := "NEEDS_APPROVAL" if {
	count(_deny) == 0
	count(_approval) > 0
}

_reasons := lib.sorted_reasons(_deny) if count(_deny) > 0

_reasons := lib.sorted_reasons(_approval) if count(_deny) == 0

_constraints := object.union_n([placement.constraints, isolation.constraints, _kind_constraints])

default _obligations := []

_obligations := admission.obligations if count(_deny) == 0

default _tenant := ""

_tenant := lib.tenant_name

_tenant := lib.new_tenant.name if not lib.tenant_name

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

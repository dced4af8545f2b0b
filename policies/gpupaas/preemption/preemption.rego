# METADATA
# title: Preemption
# description: >-
#   Priority classes against the tenant's tier, and who may preempt whom: a preemptor's tier must
#   rank above the victim's and the victim's tenant must allow preemption.
package gpupaas.preemption

import data.gpupaas.lib

# the priority class the workload or the preemptor asks for
_priority_class := name if {
	name := lib.workload.priority_class_name
	name != ""
}

_priority_class := name if {
	input.kind == "preempt"
	name := lib.payload.priority_class_name
	name != ""
}

# The ranks of lib.tiers and lib.priority_class_ranks, written out: a constant object in the rule
# costs nothing to build, a reference to a rule of lib ~13 allocations on every admission
# (preemption_test holds the rules to lib's tables for every tier and class).
_tier_rank := {"enterprise": 3, "standard": 2, "spot": 1}[lib.tenant.tier]

# METADATA
# title: Priority class above tier
# description: The priority class ranks above the tenant's tier.
# custom:
#   code: PRIORITY_CLASS_ABOVE_TIER
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.preemption"} if {
	rank := {"gpupaas-enterprise": 3, "gpupaas-standard": 2, "gpupaas-spot": 1}[_priority_class]
	rank > _tier_rank
	msg := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `" (tier `, lib.tenant.tier, ", rank ", _tier_rank, ") asks for priority class ", _priority_class, " (rank ", rank, ") above its tier; allowed at most ", lib.tiers[lib.tenant.tier].priority_class])
	meta := rego.metadata.rule()
}

# METADATA
# title: Unknown priority class
# description: A GPU workload or a preemptor asks for a priority class the platform does not define.
# custom:
#   code: PRIORITY_CLASS_UNKNOWN
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.preemption"} if {
	name := _priority_class
	not {"gpupaas-enterprise": 3, "gpupaas-standard": 2, "gpupaas-spot": 1}[name]
	_gpu_priority
	msg := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `" asks for priority class "`, name, `", which the platform does not define (known: [`, lib.names(object.keys(lib.priority_class_ranks)), "])"])
	meta := rego.metadata.rule()
}

# the priority class matters: a workload asking for GPUs, or a preemptor
_gpu_priority if count(lib.gpu_resources) > 0

_gpu_priority if input.kind == "preempt"

# ---------------------------------------------------------------------------------------------
# Victims
# ---------------------------------------------------------------------------------------------

_victims := object.get(lib.payload, "victims", []) if input.kind == "preempt"

# METADATA
# title: Unknown victim tenant
# description: A victim's tenant is not in the bundle.
# custom:
#   code: TENANT_UNKNOWN
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.preemption"} if {
	input.kind == "preempt" # the kind of every victim: the indexer skips the rule for others
	some victim in _victims
	not lib.tenants[victim.tenant]
	msg := lib.message([`victim workload "`, victim.workload, `" of tenant "`, victim.tenant, `": the tenant is not in the bundle`])
	meta := rego.metadata.rule()
}

# METADATA
# title: Protected victim
# description: The victim's tenant forbids preemption.
# custom:
#   code: PREEMPTION_VICTIM_PROTECTED
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.preemption"} if {
	input.kind == "preempt" # the kind of every victim: the indexer skips the rule for others
	some victim in _victims
	lib.tenants[victim.tenant].allow_preemption != true
	msg := lib.message([`tenant "`, lib.tenant_name, `" may not preempt workload "`, victim.workload, `": tenant "`, victim.tenant, `" sets allow_preemption false`])
	meta := rego.metadata.rule()
}

# METADATA
# title: Preemptor tier too low
# description: The preemptor's tier does not rank above the victim's tier.
# custom:
#   code: PREEMPTION_TIER_TOO_LOW
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.preemption"} if {
	input.kind == "preempt" # the kind of every victim: the indexer skips the rule for others
	some victim in _victims
	victim_tier := lib.tenants[victim.tenant].tier
	victim_rank := lib.tiers[victim_tier].rank
	_tier_rank <= victim_rank
	msg := lib.message([`tenant "`, lib.tenant_name, `" (tier `, lib.tenant.tier, ", rank ", _tier_rank, `) may not preempt workload "`, victim.workload, `" of tenant "`, victim.tenant, `" (tier `, victim_tier, ", rank ", victim_rank, ")"])
	meta := rego.metadata.rule()
}

# the victims with none of the problems above, in the order given
_preemptible_victims := [{"tenant": victim.tenant, "workload": victim.workload} |
	some victim in _victims
	victim_tenant := lib.tenants[victim.tenant]
	victim_tenant.allow_preemption == true
	_tier_rank > lib.tiers[victim_tenant.tier].rank
]

constraints["preemptible_victims"] := _preemptible_victims if input.kind == "preempt"

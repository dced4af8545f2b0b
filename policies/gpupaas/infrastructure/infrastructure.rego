# METADATA
# title: Infrastructure
# description: >-
#   Changes to GPU capacity planned in infrastructure code (a Terraform/OpenTofu plan, turned into
#   a change_capacity intent by `pdp check-plan`): dedicated pools stay inside their tenant's
#   jurisdiction, and a dedicated tenant's capacity never shrinks below its entitlement without
#   approval.
package gpupaas.infrastructure

import data.gpupaas.lib

_changes := lib.payload.changes if input.kind == "change_capacity"

# the pool states a change leaves (after) or removes (before)
_states(side) := [[change, change[side]] | some change in _changes; change[side]]

_gpus(state) := state.nodes * state.gpus_per_node

_jurisdiction(region) := object.get(lib.region_jurisdiction, region, "unknown")

# METADATA
# title: Dedicated pool outside the jurisdiction
# description: >-
#   A planned pool dedicated to a tenant lies in a region outside the tenant's jurisdiction (or in
#   a region the fleet does not know, whose jurisdiction cannot be checked).
# custom:
#   code: RESIDENCY_VIOLATION
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.infrastructure"} if {
	some [change, after] in _states("after")
	tenant := lib.tenants[after.dedicated_tenant]
	not lib.region_allowed(tenant, after.region)
	msg := lib.message([change.address, ` places pool "`, after.pool, `" dedicated to tenant "`, after.dedicated_tenant, `" (data_residency `, tenant.data_residency, ") in region ", after.region, " (jurisdiction ", _jurisdiction(after.region), ")"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Dedicated to an unknown tenant
# description: A planned pool is dedicated to a tenant the bundle does not hold.
# custom:
#   code: TENANT_UNKNOWN
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.infrastructure"} if {
	some [change, after] in _states("after")
	after.dedicated_tenant
	not lib.tenants[after.dedicated_tenant]
	msg := lib.message([change.address, ` dedicates pool "`, after.pool, `" to tenant "`, after.dedicated_tenant, `", which is not in the bundle`])
	meta := rego.metadata.rule()
}

# METADATA
# title: Unknown GPU class
# description: A planned pool has a GPU class the fleet does not define.
# custom:
#   code: GPU_CLASS_UNKNOWN
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.infrastructure"} if {
	some [change, after] in _states("after")
	not lib.gpu_class_known(after.gpu_class)
	msg := lib.message([change.address, ` gives pool "`, after.pool, `" GPU class "`, after.gpu_class, `", which the fleet does not define (known: [`, lib.names(object.keys(lib.gpu_classes)), "])"])
	meta := rego.metadata.rule()
}

# [tenant, class] of every dedicated pool state the plan touches
_touched contains [state.dedicated_tenant, state.gpu_class] if {
	some side in ["before", "after"]
	some [_, state] in _states(side)
	state.dedicated_tenant
}

_planned(tenant, class, side) := sum([gpus |
	some [_, state] in _states(side)
	state.dedicated_tenant == tenant
	state.gpu_class == class
	gpus := _gpus(state)
])

# dedicated GPUs of the tenant's class in the fleet the bundle holds (before the plan)
_dedicated_now(tenant, class) := sum([gpus |
	some cluster in lib.clusters
	some pool in cluster.pools
	pool.isolation == "dedicated"
	pool.tenant == tenant
	pool.gpu_class == class
	gpus := _gpus(pool)
])

# METADATA
# title: Dedicated capacity below entitlement
# description: >-
#   The plan takes dedicated GPUs of a class from a dedicated tenant (shrinking, moving or
#   re-purposing its pools) and leaves it fewer than its entitlement: a broken promise unless
#   someone approves it.
# custom:
#   code: DEDICATED_CAPACITY_BELOW_ENTITLEMENT
approval contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.infrastructure"} if {
	some [name, class] in _touched
	tenant := lib.tenants[name]
	tenant.isolation == "dedicated"
	removed := _planned(name, class, "before") - _planned(name, class, "after")
	removed > 0
	left := _dedicated_now(name, class) - removed
	entitled := lib.entitlement(tenant, class)
	left < entitled
	msg := lib.message(["the plan takes ", removed, " dedicated ", class, ` GPUs from tenant "`, name, `", leaving `, left, " of its entitled ", entitled])
	meta := rego.metadata.rule()
}

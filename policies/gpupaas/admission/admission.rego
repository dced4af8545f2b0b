# METADATA
# title: Admission
# description: >-
#   Tenant resolution, GPU class entitlement, quotas and capacity, batch size against the SLA,
#   and the approval and obligations of offboarding.
package gpupaas.admission

import data.gpupaas.lib

# ---------------------------------------------------------------------------------------------
# Tenant
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Unknown tenant
# description: The tenant the intent names is not in the bundle.
# custom:
#   code: TENANT_UNKNOWN
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.admission"} if {
	# lib.named_tenant_kinds, written out: OPA's indexer skips the rule for the other kinds
	input.kind in {
		"deploy_model", "scale", "change_batch_size", "request_gpu_sharing", "update_quotas",
		"offboard_tenant", "preempt", "change_sla", "reclaim", "sla_breach", "remediate_drift",
	}
	not lib.tenant
	msg := lib.message([`tenant "`, object.get(input, "tenant", ""), `" of the `, lib.kind, " intent is not in the bundle"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Namespace without tenant
# description: >-
#   The workload asks for GPUs (or claims devices) or runs in a tier's priority class, and its
#   namespace belongs to no tenant of the bundle. A workload of such a namespace that asks for
#   neither is decided by the isolation rules alone: it may not reach a dedicated pool.
# custom:
#   code: TENANT_UNKNOWN
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.admission"} if {
	input.kind in {"admit_workload", "place_workload"} # lib.workload_kinds, which OPA's indexer resolves
	not lib.tenant
	_needs_tenant
	msg := lib.message([`namespace "`, lib.workload.namespace, `" of `, lib.subject, " belongs to no tenant"])
	meta := rego.metadata.rule()
}

_needs_tenant if lib.asks_for_gpus

_needs_tenant if startswith(object.get(lib.workload, "priority_class_name", ""), "gpupaas-")

# ---------------------------------------------------------------------------------------------
# GPU classes
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Unknown GPU class
# description: The intent asks for a GPU class the fleet does not define.
# custom:
#   code: GPU_CLASS_UNKNOWN
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.admission"} if {
	input.kind in {"deploy_model", "scale", "request_gpu_sharing"} # lib.class_kinds
	not lib.gpu_class_known(lib.requested_class)
	msg := lib.message([`tenant "`, lib.tenant_name, `" asks for GPU class "`, lib.requested_class, `" for `, lib.subject, "; the fleet does not define it"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Unknown GPU product
# description: The workload's node selector pins a GPU product no GPU class of the fleet has.
# custom:
#   code: GPU_CLASS_UNKNOWN
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.admission"} if {
	input.kind in {"admit_workload", "place_workload"} # lib.workload_kinds, which OPA's indexer resolves
	lib.pinned_product
	not lib.pinned_class
	msg := lib.message([lib.subject, " pins node label ", lib.pinned_label, "=", lib.pinned_product, ", which is no GPU class of the fleet"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Unknown GPU class in quotas
# description: The new entitlements name a GPU class the fleet does not define.
# custom:
#   code: GPU_CLASS_UNKNOWN
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.admission"} if {
	input.kind == "update_quotas"
	some class, _ in lib.payload.entitlements
	not lib.gpu_class_known(class)
	msg := lib.message([`new entitlements of tenant "`, lib.tenant_name, `" name GPU class "`, class, `"; the fleet does not define it`])
	meta := rego.metadata.rule()
}

# METADATA
# title: GPU class not entitled
# description: The tenant has no entitlement for the GPU class the intent asks for or pins.
# custom:
#   code: GPU_CLASS_NOT_ENTITLED
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.admission"} if {
	entitled := lib.entitled_classes(lib.tenant)
	not lib.requested_class in entitled # first: most intents ask for an entitled class
	lib.gpu_class_known(lib.requested_class)
	msg := lib.message([`tenant "`, lib.tenant_name, `" has no entitlement for GPU class "`, lib.requested_class, `" (entitled: [`, lib.names(entitled), "]) asked for by ", lib.subject])
	meta := rego.metadata.rule()
}

# METADATA
# title: GPU vendor not entitled
# description: The workload asks for GPU resources of a vendor the tenant has no entitled class of.
# custom:
#   code: GPU_CLASS_NOT_ENTITLED
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.admission"} if {
	input.kind in {"admit_workload", "place_workload"} # lib.workload_kinds, which OPA's indexer resolves
	some resource in lib.gpu_resources
	vendor := split(resource, ".")[0] # lib.resource_vendor, without a call per resource
	not vendor in _entitled_vendors
	msg := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `" asks for `, vendor, " GPUs ([", lib.names(lib.gpu_resources), "]) but the tenant is entitled to no ", vendor, " GPU class"])
	meta := rego.metadata.rule()
}

# the vendors of the tenant's entitled classes
_entitled_vendors := {lib.gpu_classes[class].vendor | some class in classes} if classes := lib.entitled_classes(lib.tenant)

# ---------------------------------------------------------------------------------------------
# Entitlement and capacity of deploy_model and scale
# ---------------------------------------------------------------------------------------------

# the new total of the requested class when an intent adds GPUs of an entitled class
_total := lib.usage(lib.requested_class) + lib.additional_gpus if {
	lib.additional_gpus > 0
	lib.requested_class in lib.entitled_classes(lib.tenant)
}

_entitlement := lib.entitlement(lib.tenant, lib.requested_class)

_over_entitlement_message := lib.message([`tenant "`, lib.tenant_name, `" (tier `, lib.tenant.tier, ") asks for ", lib.additional_gpus, " more ", lib.requested_class, " GPUs for ", lib.subject, ": usage ", lib.usage(lib.requested_class), " + ", lib.additional_gpus, " = ", _total, " exceeds the entitlement of ", _entitlement]) if {
	_total > _entitlement
}

# METADATA
# title: Quota approval
# description: An enterprise or standard request above the entitlement needs approval.
# custom:
#   code: QUOTA_APPROVAL_REQUIRED
approval contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.admission"} if {
	msg := _over_entitlement_message # first: undefined for an intent within its entitlement
	lib.tiers[lib.tenant.tier].over_entitlement == "approval"
	meta := rego.metadata.rule()
}

# METADATA
# title: Entitlement exceeded
# description: A spot request above the entitlement is refused.
# custom:
#   code: ENTITLEMENT_EXCEEDED
deny contains {"code": meta.custom.code, "message": _over_entitlement_message, "policy": "gpupaas.admission"} if {
	input.kind in {"deploy_model", "scale"} # the kinds that add GPUs (lib.additional_gpus)

	# first: only spot tenants get past it. lib.tiers' over_entitlement written out: every
	# deployment evaluates this line, and a reference to that constant rule cost it ~13
	# allocations (admission_test holds it to lib.tiers for every tier)
	{"enterprise": "approval", "standard": "approval", "spot": "deny"}[lib.tenant.tier] == "deny"
	meta := rego.metadata.rule()
}

# METADATA
# title: Capacity exceeded
# description: More GPUs than the eligible pools hold in total.
# custom:
#   code: CAPACITY_EXCEEDED
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.admission"} if {
	input.kind in {"deploy_model", "scale"} # the kinds that add GPUs (lib.additional_gpus)
	total := _total # first: an intent that adds no GPUs never sums the capacity of its pools
	count(lib.target_clusters) > 0
	capacity := lib.target_capacity
	total > capacity
	msg := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `" needs `, _total, " ", lib.requested_class, " GPUs in total but the eligible pools [", lib.names({p | some [_, p] in lib.target_pools}), "] hold ", capacity])
	meta := rego.metadata.rule()
}

# ---------------------------------------------------------------------------------------------
# Entitlement of workload admission (always a deny)
# ---------------------------------------------------------------------------------------------

# [classes, usage, entitlement] a workload's whole GPUs of a vendor count against: the pinned class
# read directly when it is of the vendor and entitled (most admissions: -30 allocations, without
# the two sums), else summed over _workload_classes, which is empty (no denial) for a pinned class
# of the vendor that is not entitled
_workload_entitlement(vendor) := [{class}, object.get(object.get(input, "usage", {}), class, 0), limit] if {
	class := lib.pinned_class
	lib.gpu_classes[class].vendor == vendor
	limit := lib.tenant.entitlements[class]
} else := [classes, used, limit] if {
	classes := _workload_classes(vendor)
	count(classes) > 0
	usage := object.get(input, "usage", {})
	used := sum([object.get(usage, class, 0) | some class in classes]) # lib.usage, without a call per class
	limit := sum([lib.tenant.entitlements[class] | some class in classes]) # the classes are entitled
}

# the entitled classes a workload's whole GPUs of a vendor count against
_workload_classes(vendor) := {lib.pinned_class} & lib.entitled_classes(lib.tenant) if {
	lib.gpu_classes[lib.pinned_class].vendor == vendor # lib.vendor_of
} else := {class | some class in lib.entitled_classes(lib.tenant); lib.gpu_classes[class].vendor == vendor}

# METADATA
# title: Workload above entitlement
# description: >-
#   The workload's whole GPUs plus the tenant's usage exceed the entitlement of the pinned class,
#   or of all the entitled classes of that vendor; admission refuses it whatever the tier.
# custom:
#   code: ENTITLEMENT_EXCEEDED
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.admission"} if {
	input.kind in {"admit_workload", "place_workload"} # lib.workload_kinds, which OPA's indexer resolves
	some resource, vendor in {"nvidia.com/gpu": "nvidia", "amd.com/gpu": "amd"} # lib.whole_gpu_resources
	gpus := lib.resources[resource]
	gpus > 0
	[classes, used, limit] := _workload_entitlement(vendor)
	used + gpus > limit
	msg := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `" asks for `, gpus, " ", vendor, " GPUs: usage ", used, " + ", gpus, " = ", used + gpus, " exceeds the entitlement of ", limit, " for [", lib.names(classes), "]"])
	meta := rego.metadata.rule()
}

# ---------------------------------------------------------------------------------------------
# Quotas
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Quota below usage
# description: A new entitlement (or a removed class) below what the tenant holds now.
# custom:
#   code: QUOTA_BELOW_USAGE
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.admission"} if {
	input.kind == "update_quotas"
	some class, used in object.get(input, "usage", {})
	new := object.get(lib.payload.entitlements, class, 0)
	new < used
	msg := lib.message([`new entitlement of tenant "`, lib.tenant_name, `" for `, class, " is ", new, ", below its usage of ", used])
	meta := rego.metadata.rule()
}

# METADATA
# title: Quota increase
# description: Any quota increase needs approval.
# custom:
#   code: QUOTA_APPROVAL_REQUIRED
approval contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.admission"} if {
	input.kind == "update_quotas"
	some class, new in lib.payload.entitlements
	current := lib.entitlement(lib.tenant, class)
	new > current
	msg := lib.message([`entitlement of tenant "`, lib.tenant_name, `" for `, class, " rises from ", current, " to ", new])
	meta := rego.metadata.rule()
}

# ---------------------------------------------------------------------------------------------
# Batch size
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Batch size above SLA
# description: The batch size exceeds the max_batch_size of the tenant's SLA.
# custom:
#   code: BATCH_SIZE_ABOVE_SLA
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.admission"} if {
	input.kind in {"deploy_model", "change_batch_size"}
	max := lib.tenant.sla.max_batch_size
	lib.payload.batch_size > max
	msg := lib.message(["batch size ", lib.payload.batch_size, " of ", lib.subject, " exceeds the max_batch_size ", max, ` of tenant "`, lib.tenant_name, `"'s SLA (`, lib.tenant.sla.class, ")"])
	meta := rego.metadata.rule()
}

# ---------------------------------------------------------------------------------------------
# Offboarding
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Enterprise offboarding
# description: Offboarding an enterprise tenant needs approval.
# custom:
#   code: OFFBOARD_APPROVAL_REQUIRED
approval contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.admission"} if {
	input.kind == "offboard_tenant"
	lib.tenant.tier == "enterprise"
	msg := lib.message([`offboarding enterprise tenant "`, lib.tenant_name, `" (reason: `, object.get(lib.payload, "reason", "none given"), ") needs approval"])
	meta := rego.metadata.rule()
}

# the steps offboarding must complete, in order (the decision drops them when it denies)
obligations := [
	{
		"code": "DRAIN_WORKLOADS",
		"description": lib.message([`drain the workloads of tenant "`, lib.tenant_name, `"`]),
		"params": {"active_workloads": object.get(lib.payload, "active_workloads", 0)},
	},
	{
		"code": "REVOKE_ACCESS",
		"description": lib.message([`revoke every access of tenant "`, lib.tenant_name, `" to its namespaces`]),
		"params": {"namespaces": lib.tenant.namespaces},
	},
	{
		"code": "DESTROY_DATA",
		"description": lib.message([`destroy and verify the destruction of the data of tenant "`, lib.tenant_name, `"`]),
		"params": {"namespaces": lib.tenant.namespaces, "verify": true},
	},
	{
		"code": "ISSUE_DESTRUCTION_CERTIFICATE",
		"description": lib.message([`issue the data destruction certificate of tenant "`, lib.tenant_name, `"`]),
		"params": {},
	},
	{
		"code": "ARCHIVE_AUDIT_TRAIL",
		"description": lib.message([`archive the audit trail of tenant "`, lib.tenant_name, `"`]),
		"params": {},
	},
] if {
	input.kind == "offboard_tenant"
	lib.tenant
}

package gpupaas.admission_test

import data.gpupaas.admission
import data.gpupaas.decision
import data.gpupaas.lib
import data.gpupaas.testdata

_samples := data.gpupaas.admission.samples

_passing_samples := {name |
	some name, sample in _samples
	result := decision.result with input as sample.input
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.matches(result, sample.expect)
}

test_samples if {
	count(_samples) >= 2
	_passing_samples == {name | some name, _ in _samples}
}

_deploy(tenant, class, replicas) := {
	"kind": "deploy_model", "tenant": tenant,
	"deploy_model": {"deployment": "model", "gpu_class": class, "gpus_per_replica": 1, "replicas": replicas},
}

_scale(tenant, class, current, target) := {
	"kind": "scale", "tenant": tenant,
	"scale": {"deployment": "model", "gpu_class": class, "gpus_per_replica": 2, "current_replicas": current, "target_replicas": target},
}

_admit(namespace, workload) := {"kind": "admit_workload", "admit_workload": object.union({"namespace": namespace, "name": "w"}, workload)}

# ---- tenant ----

test_unknown_tenant if {
	result := decision.result with input as _deploy("nobody", "H100-80GB", 1)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "TENANT_UNKNOWN",
		"message": `tenant "nobody" of the deploy_model intent is not in the bundle`,
		"policy": "gpupaas.admission",
	}]
	result.constraints == {}
}

test_namespace_without_tenant if {
	result := decision.result with input as _admit("stray", {"resources": {"nvidia.com/gpu": 1}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "TENANT_UNKNOWN",
		"message": `namespace "stray" of workload "stray/w" belongs to no tenant`,
		"policy": "gpupaas.admission",
	}]
}

test_namespace_without_tenant_needs_a_tenant_for_claims_and_tiers if {
	claims := decision.result with input as _admit("stray", {"resource_claims": ["gpu"]})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(claims) == ["TENANT_UNKNOWN"]
	tier := decision.result with input as _admit("stray", {"priority_class_name": "gpupaas-spot"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(tier) == ["TENANT_UNKNOWN"]
}

test_namespace_without_tenant_asking_for_nothing_of_a_tenant_is_allowed if {
	# a region or a shared pool is no tenant's: only a dedicated pool is (gpupaas.isolation)
	result := decision.result with input as _admit("stray", {"node_selector": {
		"topology.kubernetes.io/region": "us-east-1",
		"gpupaas.io/pool": "us-h100-shared",
	}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.tenant == ""
}

# ---- GPU classes ----

test_unknown_gpu_class if {
	result := decision.result with input as _deploy("globex", "B200", 1)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	testdata.codes(result) == ["GPU_CLASS_UNKNOWN"]
}

test_unknown_pinned_product if {
	reasons := admission.deny with input as _admit("globex-ml", {
		"resources": {"nvidia.com/gpu": 1},
		"node_selector": {"nvidia.com/gpu.product": "NVIDIA-B200"},
	})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in reasons] == [`workload "globex-ml/w" pins node label nvidia.com/gpu.product=NVIDIA-B200, which is no GPU class of the fleet`]
}

test_gpu_class_not_entitled if {
	result := decision.result with input as _deploy("globex", "MI300X", 1)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "GPU_CLASS_NOT_ENTITLED",
		"message": `tenant "globex" has no entitlement for GPU class "MI300X" (entitled: [A100-40GB, H100-80GB]) asked for by deployment "model"`,
		"policy": "gpupaas.admission",
	}]
}

test_pinned_class_not_entitled if {
	result := decision.result with input as _admit("globex-ml", {
		"resources": {"amd.com/gpu": 1},
		"node_selector": {"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"},
	})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	testdata.codes(result) == ["GPU_CLASS_NOT_ENTITLED"]
	count(result.reasons) == 2 # the class and the vendor
}

test_vendor_not_entitled if {
	reasons := admission.deny with input as _admit("acme-prod", {"resources": {"amd.com/gpu": 2, "nvidia.com/gpu": 0}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in reasons] == [`workload "acme-prod/w" of tenant "acme-eu" asks for amd GPUs ([amd.com/gpu]) but the tenant is entitled to no amd GPU class`]
}

# ---- entitlement and capacity ----

test_enterprise_scale_above_entitlement_needs_approval if {
	result := decision.result with input as object.union(_scale("acme-eu", "H100-80GB", 2, 3), {"usage": {"H100-80GB": 4}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "NEEDS_APPROVAL"
	result.reasons == [{
		"code": "QUOTA_APPROVAL_REQUIRED",
		"message": `tenant "acme-eu" (tier enterprise) asks for 2 more H100-80GB GPUs for deployment "model": usage 4 + 2 = 6 exceeds the entitlement of 4`,
		"policy": "gpupaas.admission",
	}]
	result.constraints.eligible_clusters == ["eu-west"]
	result.constraints.priority_class_name == "gpupaas-enterprise"
}

test_within_entitlement_allowed if {
	result := decision.result with input as object.union(_scale("acme-eu", "H100-80GB", 1, 2), {"usage": {"H100-80GB": 2}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.reasons == []
}

test_spot_above_entitlement_denied if {
	# scale has no sharing mode: a tenant that allows sharing may use pools of any strategy
	result := decision.result with input as object.union(_scale("initech-spot", "A100-40GB", 4, 6), {"usage": {"A100-40GB": 14}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	result.reasons == [{
		"code": "ENTITLEMENT_EXCEEDED",
		"message": `tenant "initech-spot" (tier spot) asks for 4 more A100-40GB GPUs for deployment "model": usage 14 + 4 = 18 exceeds the entitlement of 16`,
		"policy": "gpupaas.admission",
	}]
	result.constraints.eligible_clusters == ["us-east"]
}

# ENTITLEMENT_EXCEEDED writes lib.tiers' over_entitlement out: for every tier, a request above the
# entitlement is denied or needs approval as lib.tiers says
test_over_entitlement_by_tier_as_lib_tiers_says if {
	every tier, spec in lib.tiers {
		_over_entitlement_outcome(tier) == {"deny": "DENY", "approval": "NEEDS_APPROVAL"}[spec.over_entitlement]
	}
}

_over_entitlement_outcome(tier) := result.outcome if {
	tenants := object.union(testdata.tenants, {"acme-eu": object.union(testdata.tenants["acme-eu"], {"tier": tier})})
	result := decision.result with input as object.union(_scale("acme-eu", "H100-80GB", 2, 3), {"usage": {"H100-80GB": 4}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as tenants
}

test_scale_down_allowed if {
	result := decision.result with input as object.union(_scale("initech-spot", "A100-40GB", 6, 2), {"usage": {"A100-40GB": 40}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
}

test_scale_down_of_class_not_entitled if {
	result := decision.result with input as _scale("initech-spot", "H100-80GB", 6, 2)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["GPU_CLASS_NOT_ENTITLED"]
}

test_capacity_exceeded if {
	# acme-eu's only H100 pool is its dedicated pool: 2 nodes x 8 GPUs
	result := decision.result with input as _deploy("acme-eu", "H100-80GB", 20)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	result.reasons == [{
		"code": "CAPACITY_EXCEEDED",
		"message": `deployment "model" of tenant "acme-eu" needs 20 H100-80GB GPUs in total but the eligible pools [acme-h100-dedicated] hold 16`,
		"policy": "gpupaas.admission",
	}]
}

test_workload_above_entitlement_denied_for_any_tier if {
	reasons := admission.deny with input as object.union(
		_admit("globex-ml", {"resources": {"nvidia.com/gpu": 4}}),
		{"usage": {"H100-80GB": 8, "A100-40GB": 2}},
	)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in reasons] == [`workload "globex-ml/w" of tenant "globex" asks for 4 nvidia GPUs: usage 10 + 4 = 14 exceeds the entitlement of 12 for [A100-40GB, H100-80GB]`]
}

test_pinned_workload_above_class_entitlement if {
	reasons := admission.deny with input as object.union(
		_admit("globex-ml", {"resources": {"nvidia.com/gpu": 1}, "node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}}),
		{"usage": {"H100-80GB": 8}},
	)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.code | some r in reasons] == ["ENTITLEMENT_EXCEEDED"]
	contains(reasons[_].message, "usage 8 + 1 = 9 exceeds the entitlement of 8 for [H100-80GB]")
}

test_pinned_workload_within_class_entitlement if {
	# the -SHARED suffix GPU feature discovery appends does not change the class
	result := decision.result with input as object.union(
		_admit("globex-ml", {"resources": {"nvidia.com/gpu.shared": 2}, "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-SHARED"}}),
		{"usage": {"A100-40GB": 4}},
	)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints.node_selector == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
}

# ---- batch size ----

test_batch_size_above_sla if {
	result := decision.result with input as {"kind": "change_batch_size", "tenant": "acme-eu", "change_batch_size": {"deployment": "llama", "batch_size": 33}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "BATCH_SIZE_ABOVE_SLA",
		"message": `batch size 33 of deployment "llama" exceeds the max_batch_size 32 of tenant "acme-eu"'s SLA (latency-critical)`,
		"policy": "gpupaas.admission",
	}]
}

test_batch_size_within_sla if {
	result := decision.result with input as {"kind": "change_batch_size", "tenant": "acme-eu", "change_batch_size": {"deployment": "llama", "batch_size": 32}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints == {}
}

test_batch_size_without_sla_limit if {
	result := decision.result with input as {"kind": "change_batch_size", "tenant": "globex", "change_batch_size": {"deployment": "llama", "batch_size": 4096}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
}

test_deploy_batch_size_above_sla if {
	intent := _deploy("acme-eu", "H100-80GB", 1)
	result := decision.result with input as object.union(intent, {"deploy_model": {"batch_size": 64}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["BATCH_SIZE_ABOVE_SLA"]
}

# ---- quotas ----

test_quota_decrease_allowed if {
	result := decision.result with input as {"kind": "update_quotas", "tenant": "globex", "usage": {"H100-80GB": 2}, "update_quotas": {"entitlements": {"H100-80GB": 4, "A100-40GB": 4}}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
}

test_quota_increase_needs_approval if {
	result := decision.result with input as {"kind": "update_quotas", "tenant": "globex", "update_quotas": {"entitlements": {"H100-80GB": 8, "A100-40GB": 4, "MI300X": 8}}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "NEEDS_APPROVAL"
	result.reasons == [{
		"code": "QUOTA_APPROVAL_REQUIRED",
		"message": `entitlement of tenant "globex" for MI300X rises from 0 to 8`,
		"policy": "gpupaas.admission",
	}]
}

test_quota_below_usage if {
	result := decision.result with input as {"kind": "update_quotas", "tenant": "globex", "usage": {"H100-80GB": 6, "A100-40GB": 1}, "update_quotas": {"entitlements": {"H100-80GB": 5}}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	[r.message | some r in result.reasons] == [
		`new entitlement of tenant "globex" for A100-40GB is 0, below its usage of 1`,
		`new entitlement of tenant "globex" for H100-80GB is 5, below its usage of 6`,
	]
}

test_quota_unknown_class if {
	result := decision.result with input as {"kind": "update_quotas", "tenant": "globex", "update_quotas": {"entitlements": {"H100-80GB": 8, "A100-40GB": 4, "B200": 1}}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	testdata.codes(result) == ["GPU_CLASS_UNKNOWN"]
}

# ---- offboarding ----

_obligation_codes := ["DRAIN_WORKLOADS", "REVOKE_ACCESS", "DESTROY_DATA", "ISSUE_DESTRUCTION_CERTIFICATE", "ARCHIVE_AUDIT_TRAIL"]

test_offboard_enterprise_needs_approval if {
	result := decision.result with input as {"kind": "offboard_tenant", "tenant": "acme-eu", "offboard_tenant": {"active_workloads": 3, "reason": "contract ended"}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "NEEDS_APPROVAL"
	result.reasons == [{
		"code": "OFFBOARD_APPROVAL_REQUIRED",
		"message": `offboarding enterprise tenant "acme-eu" (reason: contract ended) needs approval`,
		"policy": "gpupaas.admission",
	}]
	[o.code | some o in result.obligations] == _obligation_codes
	result.obligations[0].params == {"active_workloads": 3}
	result.obligations[1].params == {"namespaces": ["acme-prod", "acme-staging"]}
	result.obligations[2].params == {"namespaces": ["acme-prod", "acme-staging"], "verify": true}
	result.obligations[3].params == {}
}

test_offboard_standard_allowed_with_obligations if {
	result := decision.result with input as {"kind": "offboard_tenant", "tenant": "globex"}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	[o.code | some o in result.obligations] == _obligation_codes
	result.obligations[0].params == {"active_workloads": 0}
}

test_offboard_unknown_tenant_has_no_obligations if {
	result := decision.result with input as {"kind": "offboard_tenant", "tenant": "nobody"}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["TENANT_UNKNOWN"]
	result.obligations == []
}

# ---- Dynamic Resource Allocation claims: their GPU devices as resources ----

test_gpu_claims_meet_the_tenant_and_entitlement_rules if {
	template := {"kind": "ResourceClaimTemplate", "resources": {"nvidia.com/gpu": 8}}
	over := decision.result with input as _admit("acme-prod", template)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(over) == ["ENTITLEMENT_EXCEEDED"]
	within := decision.result with input as _admit("acme-prod", object.union(template, {"resources": {"nvidia.com/gpu": 2}}))
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	within.outcome == "ALLOW"
	within.warnings == [] # a claim places nothing: no region to pin
	unowned := decision.result with input as _admit("stray", object.union(template, {"kind": "ResourceClaim"}))
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(unowned) == ["TENANT_UNKNOWN"]
}

# ---- the kinds each rule judges ----

# The deny rules test the kinds they judge by input.kind, written out where they were lib's kind
# sets: an unknown tenant is named by every kind of lib.named_tenant_kinds and by no other, an
# unknown class by every kind of lib.class_kinds, a spot request above the entitlement by the
# kinds that add GPUs.
test_rules_judge_the_kinds_of_lib_kind_sets if {
	unknown_tenant := {k |
		some k in lib.intent_kinds
		some r in admission.deny with input as {"kind": k, "tenant": "nobody"}
			with data.gpupaas.fleet as testdata.fleet
			with data.gpupaas.tenants as testdata.tenants
		r.code == "TENANT_UNKNOWN"
	}
	unknown_tenant == lib.named_tenant_kinds
	payload := {
		"deployment": "d", "gpu_class": "Z100", "gpus_per_replica": 1, "replicas": 100,
		"current_replicas": 0, "target_replicas": 100, "mode": "mps", "batch_size": 1,
	}
	unknown_class := {k |
		some k in lib.intent_kinds
		some r in admission.deny with input as {"kind": k, "tenant": "globex", k: payload}
			with data.gpupaas.fleet as testdata.fleet
			with data.gpupaas.tenants as testdata.tenants
		r.code == "GPU_CLASS_UNKNOWN"
	}
	unknown_class == lib.class_kinds
	spot := {k |
		some k in lib.intent_kinds
		some r in admission.deny with input as {"kind": k, "tenant": "initech-spot", k: object.union(payload, {"gpu_class": "A100-40GB"})}
			with data.gpupaas.fleet as testdata.fleet
			with data.gpupaas.tenants as testdata.tenants
		r.code == "ENTITLEMENT_EXCEEDED"
	}
	spot == {"deploy_model", "scale"}
}

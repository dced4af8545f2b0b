package gpupaas.decision_test

import data.gpupaas.decision
import data.gpupaas.lib
import data.gpupaas.testdata

_samples := data.gpupaas.decision.samples

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

test_unsupported_kind if {
	result := decision.result with input as {"kind": "reboot_cluster"}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	result.reasons == [{
		"code": "INTENT_UNSUPPORTED",
		"message": `intent kind "reboot_cluster" is not supported (supported: [admit_workload, change_batch_size, change_capacity, change_sla, create_tenant, degrade, deploy_model, offboard_tenant, place_workload, preempt, reclaim, remediate_drift, request_gpu_sharing, scale, sla_breach, update_quotas])`,
		"policy": "gpupaas.decision",
	}]
}

test_defined_for_any_input if {
	inputs := [{}, "not an object", [1, 2], {"kind": 7}]
	results := [result |
		some intent in inputs
		result := decision.result with input as intent
	]
	count(results) == count(inputs)
	every result in results {
		result.outcome == "DENY"
		testdata.codes(result) == ["INTENT_UNSUPPORTED"]
		result.bundle_revision == ""
		result.constraints == {}
		result.obligations == []
	}
}

test_defined_without_input_and_data if {
	decision.result.outcome == "DENY"
}

test_bundle_revision if {
	result := decision.result with input as {"kind": "offboard_tenant", "tenant": "globex"}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
		with data.gpupaas.bundle.revision as "3f9c2a1b"
	result.bundle_revision == "3f9c2a1b"
}

test_deny_hides_approvals_and_obligations if {
	# above the entitlement (approval) and above the SLA (deny)
	result := decision.result with input as {
		"kind": "deploy_model", "tenant": "acme-eu", "usage": {"H100-80GB": 4},
		"deploy_model": {"deployment": "llama", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 1, "batch_size": 64},
	}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	testdata.codes(result) == ["BATCH_SIZE_ABOVE_SLA"]
}

test_reasons_sorted_by_code_then_message if {
	result := decision.result with input as {"kind": "update_quotas", "tenant": "globex", "usage": {"H100-80GB": 6, "A100-40GB": 1}, "update_quotas": {"entitlements": {"Z100": 1, "B200": 1}}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[[r.code, r.message] | some r in result.reasons] == [
		["GPU_CLASS_UNKNOWN", `new entitlements of tenant "globex" name GPU class "B200"; the fleet does not define it`],
		["GPU_CLASS_UNKNOWN", `new entitlements of tenant "globex" name GPU class "Z100"; the fleet does not define it`],
		["QUOTA_BELOW_USAGE", `new entitlement of tenant "globex" for A100-40GB is 0, below its usage of 1`],
		["QUOTA_BELOW_USAGE", `new entitlement of tenant "globex" for H100-80GB is 0, below its usage of 6`],
	]
}

test_every_reason_code_is_annotated if {
	# every reason a decision can give comes from a rule whose METADATA carries custom.code
	result := decision.result with input as {"kind": "scale", "tenant": "initech-spot", "usage": {"A100-40GB": 16}, "scale": {"deployment": "m", "gpu_class": "A100-40GB", "gpus_per_replica": 1, "current_replicas": 0, "target_replicas": 1}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	every r in result.reasons {
		regex.match(`^[A-Z_]+$`, r.code)
		r.policy == "gpupaas.admission"
	}
	testdata.codes(result) == ["ENTITLEMENT_EXCEEDED"]
}

test_tenant_is_resolved_from_the_workload_namespace if {
	result := decision.result with input as {
		"kind": "admit_workload",
		"admit_workload": {"namespace": "initech-batch", "name": "job", "resources": {"nvidia.com/gpu": 1}},
	}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.tenant == "initech-spot"
}

test_tenant_of_create_tenant_is_the_new_tenant if {
	result := decision.result with input as {"kind": "create_tenant", "create_tenant": {"policy": {"name": "newco"}}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.tenant == "newco"
}

test_batch_decides_each_intent_in_order_on_one_revision if {
	intents := [
		{"kind": "request_gpu_sharing", "tenant": "acme-eu", "request_gpu_sharing": {"mode": "mps"}},
		{"kind": "offboard_tenant", "tenant": "globex"},
		{"kind": "reboot_cluster"},
	]
	results := decision.batch with input as {"intents": intents}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
		with data.gpupaas.bundle.revision as "rev-7"
	[r.outcome | some r in results] == ["DENY", "ALLOW", "DENY"]
	testdata.codes(results[0]) == ["SHARING_NOT_ALLOWED"]
	testdata.codes(results[2]) == ["INTENT_UNSUPPORTED"]
	{r.bundle_revision | some r in results} == {"rev-7"}
	[r.tenant | some r in results] == ["acme-eu", "globex", ""]
}

# the unsupported-kind rule writes lib.intent_kinds out: every kind of it is supported, one more is not
test_every_intent_kind_is_supported if {
	every kind in lib.intent_kinds {
		not _unsupported(kind)
	}
	_unsupported("reboot_cluster")
	count(lib.intent_kinds) == 16
}

_unsupported(kind) if {
	some r in decision.deny with input as {"kind": kind}
	r.code == "INTENT_UNSUPPORTED"
}

# The decision reads admission's approvals only for the kinds in _approval's kind sets: for every
# other kind an intent that asks for everything admission approves (GPUs above the entitlement, a
# quota increase, an enterprise tenant offboarded) gets none from it.
test_admission_approves_only_the_kinds_the_decision_reads if {
	approving := {"deploy_model", "scale", "offboard_tenant", "update_quotas"}
	payload := {
		"deployment": "d", "gpu_class": "H100-80GB", "gpus_per_replica": 8, "replicas": 100,
		"current_replicas": 0, "target_replicas": 100, "entitlements": {"H100-80GB": 1000},
	}
	approved := {k |
		some k in lib.intent_kinds
		count(data.gpupaas.admission.approval) > 0 with input as {"kind": k, "tenant": "acme-eu", k: payload}
			with data.gpupaas.fleet as testdata.fleet
			with data.gpupaas.tenants as testdata.tenants
	}
	approved == approving
}

# _constraints adds _kind_constraints only for the kinds of its rules: of every sample of every
# area, those of other kinds have none to add
test_kind_constraints_only_for_the_kinds_that_add_them if {
	areas := [
		"admission", "decision", "degradation", "drift", "infrastructure", "isolation",
		"placement", "preemption", "reclaim", "residency", "sharing", "sla_breach", "tenancy",
	]
	adding := {sample.input.kind |
		some area in areas
		some sample in data.gpupaas[area].samples
		constraints := decision._kind_constraints with input as sample.input
			with data.gpupaas.fleet as testdata.fleet
			with data.gpupaas.tenants as testdata.tenants
		constraints != {}
	}
	count(adding) > 0
	adding <= {"preempt", "reclaim", "degrade", "sla_breach", "remediate_drift"}
}

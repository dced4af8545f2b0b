package gpupaas.infrastructure_test

import data.gpupaas.decision
import data.gpupaas.testdata

_samples := data.gpupaas.infrastructure.samples

_passing_samples := {name |
	some name, sample in _samples
	result := decision.result with input as sample.input
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.matches(result, sample.expect)
}

test_samples if {
	count(_samples) >= 3
	_passing_samples == {name | some name, _ in _samples}
}

_acme := {
	"pool": "acme-h100-dedicated", "cluster": "eu-west", "region": "eu-west-1",
	"gpu_class": "H100-80GB", "nodes": 2, "gpus_per_node": 8, "dedicated_tenant": "acme-eu",
}

_plan(changes) := {"kind": "change_capacity", "change_capacity": {"changes": changes}}

_change(action, before, after) := object.union(
	{"address": "terraform_data.acme", "action": action},
	object.union({k: v | some k, v in {"before": before}; v != null}, {k: v | some k, v in {"after": after}; v != null}),
)

test_moving_a_dedicated_pool_abroad_is_denied_naming_everything if {
	result := decision.result with input as _plan([_change("update", _acme, object.union(_acme, {"region": "us-east-1"}))])
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	result.tenant == ""
	result.reasons == [{
		"code": "RESIDENCY_VIOLATION",
		"message": `terraform_data.acme places pool "acme-h100-dedicated" dedicated to tenant "acme-eu" (data_residency eu-only) in region us-east-1 (jurisdiction US)`,
		"policy": "gpupaas.infrastructure",
	}]
}

test_a_region_the_fleet_does_not_know_cannot_hold_a_restricted_tenants_pool if {
	result := decision.result with input as _plan([_change("create", null, object.union(_acme, {"pool": "acme-new", "region": "mars-1"}))])
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.code | some r in result.reasons] == ["RESIDENCY_VIOLATION"]
	contains(result.reasons[0].message, "(jurisdiction unknown)")
}

test_a_residency_any_tenant_may_have_a_dedicated_pool_anywhere if {
	pool := object.union(_acme, {"pool": "globex-us", "region": "us-east-1", "dedicated_tenant": "globex"})
	result := decision.result with input as _plan([_change("create", null, pool)])
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
}

test_shrinking_below_the_entitlement_needs_approval if {
	result := decision.result with input as _plan([_change("delete", _acme, null)])
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "NEEDS_APPROVAL"
	result.reasons == [{
		"code": "DEDICATED_CAPACITY_BELOW_ENTITLEMENT",
		"message": `the plan takes 16 dedicated H100-80GB GPUs from tenant "acme-eu", leaving 0 of its entitled 4`,
		"policy": "gpupaas.infrastructure",
	}]
}

test_shrinking_within_the_entitlement_is_allowed if {
	result := decision.result with input as _plan([_change("update", _acme, object.union(_acme, {"nodes": 1}))])
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
}

test_repurposing_a_dedicated_pool_to_another_tenant_needs_approval if {
	result := decision.result with input as _plan([_change("update", _acme, object.union(_acme, {"dedicated_tenant": "globex"}))])
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.code | some r in result.reasons] == ["DEDICATED_CAPACITY_BELOW_ENTITLEMENT"]
}

test_moving_capacity_between_own_pools_is_allowed if {
	replacement := object.union(_acme, {"pool": "acme-h100-dedicated-b"})
	result := decision.result with input as _plan([_change("delete", _acme, null), _change("create", null, replacement)])
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
}

test_unknown_tenant_and_class_are_denied if {
	pool := object.union(_acme, {"pool": "x", "dedicated_tenant": "nobody", "gpu_class": "B200"})
	result := decision.result with input as _plan([_change("create", null, pool)])
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	[r.code | some r in result.reasons] == ["GPU_CLASS_UNKNOWN", "TENANT_UNKNOWN"]
}

test_a_plan_names_no_tenant_and_needs_none if {
	result := decision.result with input as _plan([])
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.reasons == []
}

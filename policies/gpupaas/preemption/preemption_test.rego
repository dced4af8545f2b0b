package gpupaas.preemption_test

import data.gpupaas.decision
import data.gpupaas.lib
import data.gpupaas.preemption
import data.gpupaas.testdata

_samples := data.gpupaas.preemption.samples

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

_admit(namespace, priority_class, resources) := {"kind": "admit_workload", "admit_workload": {
	"namespace": namespace, "name": "w",
	"resources": resources, "priority_class_name": priority_class,
}}

_preempt(tenant, preempt) := {"kind": "preempt", "tenant": tenant, "preempt": preempt}

test_spot_workload_with_enterprise_priority if {
	result := decision.result with input as _admit("initech-batch", "gpupaas-enterprise", {"nvidia.com/gpu": 1})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	result.reasons == [{
		"code": "PRIORITY_CLASS_ABOVE_TIER",
		"message": `workload "initech-batch/w" of tenant "initech-spot" (tier spot, rank 1) asks for priority class gpupaas-enterprise (rank 3) above its tier; allowed at most gpupaas-spot`,
		"policy": "gpupaas.preemption",
	}]
}

test_priority_at_or_below_tier if {
	reasons := preemption.deny with input as _admit("globex-ml", "gpupaas-standard", {"nvidia.com/gpu": 1})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	reasons == set()
	lower := preemption.deny with input as _admit("globex-ml", "gpupaas-spot", {"nvidia.com/gpu": 1})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	lower == set()
}

test_unknown_priority_class_on_gpu_workload if {
	result := decision.result with input as _admit("globex-ml", "system-node-critical", {"nvidia.com/gpu": 1})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "PRIORITY_CLASS_UNKNOWN",
		"message": `workload "globex-ml/w" of tenant "globex" asks for priority class "system-node-critical", which the platform does not define (known: [gpupaas-enterprise, gpupaas-spot, gpupaas-standard])`,
		"policy": "gpupaas.preemption",
	}]
}

test_unknown_priority_class_without_gpus if {
	result := decision.result with input as _admit("globex-ml", "system-node-critical", {"cpu": 2})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
}

test_empty_priority_class if {
	reasons := preemption.deny with input as _admit("globex-ml", "", {"nvidia.com/gpu": 1})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	reasons == set()
}

test_enterprise_preempts_spot if {
	result := decision.result with input as _preempt("acme-eu", {"victims": [{"tenant": "initech-spot", "workload": "initech-batch/job-1"}]})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints == {"preemptible_victims": [{"tenant": "initech-spot", "workload": "initech-batch/job-1"}]}
}

test_victim_protected_and_tier_too_low if {
	result := decision.result with input as _preempt("initech-spot", {"victims": [{"tenant": "globex", "workload": "globex-ml/trainer"}]})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [
		{
			"code": "PREEMPTION_TIER_TOO_LOW",
			"message": `tenant "initech-spot" (tier spot, rank 1) may not preempt workload "globex-ml/trainer" of tenant "globex" (tier standard, rank 2)`,
			"policy": "gpupaas.preemption",
		},
		{
			"code": "PREEMPTION_VICTIM_PROTECTED",
			"message": `tenant "initech-spot" may not preempt workload "globex-ml/trainer": tenant "globex" sets allow_preemption false`,
			"policy": "gpupaas.preemption",
		},
	]
}

test_same_tier_cannot_preempt if {
	result := decision.result with input as _preempt("initech-spot", {"victims": [{"tenant": "initech-spot", "workload": "initech-batch/old"}]})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["PREEMPTION_TIER_TOO_LOW"]
	result.constraints.preemptible_victims == []
}

test_mixed_victims_all_or_nothing if {
	victims := [
		{"tenant": "initech-spot", "workload": "initech-batch/job-1"},
		{"tenant": "globex", "workload": "globex-ml/trainer"},
		{"tenant": "nobody", "workload": "x/y"},
	]
	result := decision.result with input as _preempt("acme-eu", {"victims": victims})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	testdata.codes(result) == ["PREEMPTION_VICTIM_PROTECTED", "TENANT_UNKNOWN"]
	[r.policy | some r in result.reasons; r.code == "TENANT_UNKNOWN"] == ["gpupaas.preemption"]
	result.constraints.preemptible_victims == [{"tenant": "initech-spot", "workload": "initech-batch/job-1"}]
}

test_preemptor_priority_above_tier if {
	result := decision.result with input as _preempt("globex", {"priority_class_name": "gpupaas-enterprise", "victims": [{"tenant": "initech-spot", "workload": "initech-batch/job-1"}]})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["PRIORITY_CLASS_ABOVE_TIER"]
	result.constraints.preemptible_victims == [{"tenant": "initech-spot", "workload": "initech-batch/job-1"}]
}

test_preemptor_unknown_priority_class if {
	result := decision.result with input as _preempt("acme-eu", {"priority_class_name": "urgent", "victims": [{"tenant": "initech-spot", "workload": "initech-batch/job-1"}]})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["PRIORITY_CLASS_UNKNOWN"]
}

test_unknown_preemptor if {
	result := decision.result with input as _preempt("nobody", {"victims": [{"tenant": "initech-spot", "workload": "initech-batch/job-1"}]})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{"code": "TENANT_UNKNOWN", "message": `tenant "nobody" of the preempt intent is not in the bundle`, "policy": "gpupaas.admission"}]
	result.constraints.preemptible_victims == []
}

# the rank tables written out in preemption hold lib's: for every tier and priority class (and
# one unknown), a workload is denied above its tier exactly when lib's ranks say so
test_priority_class_ranks_are_libs if {
	tenants := {"enterprise": "acme-prod", "standard": "globex-ml", "spot": "initech-batch"}
	every tier, namespace in tenants {
		every class in array.concat([c | some c, _ in lib.priority_class_ranks], ["gpupaas-unknown"]) {
			_decided_by_lib_ranks(tier, namespace, class)
		}
	}
	count(lib.tiers) == 3
}

_decided_by_lib_ranks(tier, namespace, class) if {
	workload := {"namespace": namespace, "name": "w", "resources": {"nvidia.com/gpu": 1}, "priority_class_name": class}
	codes := {r.code | some r in preemption.deny} with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.tenants[_namespace_tenant(namespace)].tier == tier
	rank := object.get(lib.priority_class_ranks, class, 0)
	expected := {code | rank > lib.tiers[tier].rank; code := "PRIORITY_CLASS_ABOVE_TIER"} | {code |
		rank == 0
		code := "PRIORITY_CLASS_UNKNOWN"
	}
	codes == expected
}

_namespace_tenant(namespace) := name if {
	some name, t in testdata.tenants
	namespace in t.namespaces
}

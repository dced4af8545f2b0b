package gpupaas.reclaim_test

import data.gpupaas.decision
import data.gpupaas.testdata

_samples := data.gpupaas.reclaim.samples

_passing_samples := {name |
	some name, sample in _samples
	result := decision.result with input as sample.input
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.matches(result, sample.expect)
}

test_samples if {
	count(_samples) >= 4
	_passing_samples == {name | some name, _ in _samples}
}

_reclaim(tenant, usage, payload) := {
	"kind": "reclaim", "tenant": tenant, "actor": "pdp waste",
	"usage": usage, "reclaim": payload,
}

_spot := _reclaim("initech-spot", {"A100-40GB": 6}, {
	"deployment": "batch-eval", "gpu_class": "A100-40GB", "gpus_per_replica": 2,
	"current_replicas": 3, "idle_gpus": 4,
})

test_spot_idle_replicas_reclaimed_after_grace if {
	result := decision.result with input as _spot
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints.reclaim == {
		"action": "reclaim", "grace_seconds": 300, "target_replicas": 1,
		"release_gpus": 4, "protected_replicas": 0,
	}
	result.warnings == [{
		"code": "RECLAIM_SPOT",
		"message": `deployment "batch-eval" of tenant "initech-spot" (tier spot) holds 4 idle A100-40GB GPUs; scaled from 3 to 1 replicas after a grace of 300 s unless they are put to work`,
		"policy": "gpupaas.reclaim",
	}]
}

test_fleet_sets_the_grace_of_a_tier if {
	fleet := object.union(testdata.fleet, {"reclaim": {"spot": {"grace_seconds": 5}}})
	result := decision.result with input as _spot
		with data.gpupaas.fleet as fleet
		with data.gpupaas.tenants as testdata.tenants
	result.constraints.reclaim.grace_seconds == 5
	result.constraints.reclaim.target_replicas == 1
}

_standard(usage, current, idle, extra) := _reclaim("globex", {"H100-80GB": usage}, object.union(
	{"deployment": "notebook", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "current_replicas": current, "idle_gpus": idle},
	extra,
))

test_standard_above_entitlement_scaled_to_minimum if {
	# 12 H100s held, 8 entitled: the 6 idle replicas go down to the minimum of 2, which also
	# holds the entitlement (6 held elsewhere + 2 = 8)
	result := decision.result with input as _standard(12, 6, 6, {"min_replicas": 2})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints.reclaim == {
		"action": "scale_to_minimum", "grace_seconds": 3600, "target_replicas": 2,
		"release_gpus": 4, "protected_replicas": 2,
	}
	[w.code | some w in result.warnings] == ["RECLAIM_TO_MINIMUM"]
}

test_standard_minimum_defaults_to_one_replica if {
	result := decision.result with input as _standard(12, 6, 6, {"consent": true})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.constraints.reclaim.target_replicas == 1
	result.constraints.reclaim.protected_replicas == 0
}

test_standard_never_below_entitlement_without_consent if {
	# 9 H100s held, 8 entitled, 3 of them here and all idle: only 1 replica can go
	result := decision.result with input as _standard(9, 3, 3, {"min_replicas": 0})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.constraints.reclaim == {
		"action": "scale_to_minimum", "grace_seconds": 3600, "target_replicas": 2,
		"release_gpus": 1, "protected_replicas": 2,
	}
	result.warnings == [
		{
			"code": "RECLAIM_ENTITLEMENT_KEPT",
			"message": `deployment "notebook" of tenant "globex" (tier standard) holds 3 idle H100-80GB GPUs; kept at 2 replicas: fewer would leave it below its entitlement of 8 H100-80GB GPUs (6 held elsewhere), and it has not consented`,
			"policy": "gpupaas.reclaim",
		},
		{
			"code": "RECLAIM_TO_MINIMUM",
			"message": `deployment "notebook" of tenant "globex" (tier standard) holds 3 idle H100-80GB GPUs; scaled from 3 to its minimum of 2 replicas after a grace of 3600 s unless they are put to work`,
			"policy": "gpupaas.reclaim",
		},
	]
}

test_standard_within_entitlement_only_notified if {
	result := decision.result with input as _standard(2, 2, 2, {"min_replicas": 0})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints.reclaim.action == "notify"
	result.constraints.reclaim.target_replicas == 2
	[w.code | some w in result.warnings] == ["RECLAIM_ENTITLEMENT_KEPT"]
}

test_standard_with_consent_goes_below_entitlement if {
	result := decision.result with input as _standard(2, 2, 2, {"min_replicas": 0, "consent": true})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.constraints.reclaim.action == "scale_to_minimum"
	result.constraints.reclaim.target_replicas == 0
}

test_enterprise_notified_only if {
	input_doc := _reclaim("acme-eu", {"H100-80GB": 8}, {
		"deployment": "eval", "gpu_class": "H100-80GB", "gpus_per_replica": 4,
		"current_replicas": 2, "idle_gpus": 8, "consent": true,
	})
	result := decision.result with input as input_doc
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints.reclaim == {
		"action": "notify", "grace_seconds": 0, "target_replicas": 2,
		"release_gpus": 0, "protected_replicas": 0,
	}
	result.warnings == [{
		"code": "RECLAIM_NOTIFY_ONLY",
		"message": `deployment "eval" of tenant "acme-eu" (tier enterprise) holds 8 idle H100-80GB GPUs; tier enterprise is notified only, no GPU is taken`,
		"policy": "gpupaas.reclaim",
	}]
}

test_partly_idle_replica_not_reclaimed if {
	input_doc := object.union(_spot, {"reclaim": {"idle_gpus": 1}})
	result := decision.result with input as input_doc
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	result.reasons == [{
		"code": "RECLAIM_NOT_IDLE",
		"message": `deployment "batch-eval" of tenant "initech-spot" holds 1 idle A100-40GB GPUs of 6, less than one replica of 2: nothing to reclaim`,
		"policy": "gpupaas.reclaim",
	}]
	result.warnings == []
	not result.constraints.reclaim
}

test_unknown_tenant_denied if {
	input_doc := object.union(_spot, {"tenant": "nobody"})
	result := decision.result with input as input_doc
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	"TENANT_UNKNOWN" in {r.code | some r in result.reasons}
	not result.constraints.reclaim
}

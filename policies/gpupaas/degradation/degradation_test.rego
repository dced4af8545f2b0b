package gpupaas.degradation_test

import data.gpupaas.decision
import data.gpupaas.testdata

_samples := data.gpupaas.degradation.samples

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

_degrade(short, extra, deployments) := {"kind": "degrade", "actor": "test", "degrade": object.union(
	{"cause": "incident", "gpu_class": "H100-80GB", "short_gpus": short, "deployments": deployments},
	extra,
)}

_dep(tenant, name, per, replicas, cluster, extra) := object.union(
	{"tenant": tenant, "deployment": name, "gpus_per_replica": per, "replicas": replicas, "cluster": cluster},
	extra,
)

_fleet := [
	_dep("initech-spot", "small", 1, 2, "us-east", {}),
	_dep("initech-spot", "big", 4, 1, "us-east", {}),
	_dep("globex", "train", 2, 3, "us-east", {"min_replicas": 1, "affected": true}),
	_dep("globex", "eval", 1, 2, "us-east", {}),
	_dep("acme-eu", "chat", 1, 6, "eu-west", {"affected": true}),
]

_steps(result) := [[s.order, s.tenant, s.deployment, s.action, s.to_replicas, s.release_gpus] |
	some s in result.constraints.degradation.steps
]

test_spot_first_largest_first_then_standard_toward_its_minimum if {
	result := decision.result with input as _degrade(9, {"cluster": "us-east"}, _fleet)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	_steps(result) == [
		[1, "initech-spot", "big", "preempt", 0, 4],
		[2, "initech-spot", "small", "preempt", 0, 2],
		# the affected standard deployment before the larger untouched one of its tier
		[3, "globex", "train", "scale", 1, 4],
	]
	plan := result.constraints.degradation
	plan.freed_gpus == 10
	plan.sufficient == true
	plan.kept == [
		{"tenant": "globex", "deployment": "eval", "tier": "standard", "replicas": 2, "why": "not_needed"},
	]

	# the enterprise deployment is out of the short cluster: neither degraded nor kept there
	plan.replace_order == [
		{"tenant": "acme-eu", "deployment": "chat", "tier": "enterprise", "may_move_to": ["eu-west"]},
		{"tenant": "globex", "deployment": "train", "tier": "standard", "may_move_to": ["eu-west"]},
	]
	[w | some w in result.warnings; w.code == "DEGRADE_SCALE"] == [{
		"code": "DEGRADE_SCALE",
		"message": `step 3: deployment "train" of tenant "globex" (tier standard) scaled from 3 to 1 replicas, releasing 4 H100-80GB GPUs in cluster us-east`,
		"policy": "gpupaas.degradation",
	}]
	`step 1: deployment "big" of tenant "initech-spot" (tier spot) preempted, 1 -> 0 replicas, releasing 4 H100-80GB GPUs in cluster us-east; no other cluster its residency and isolation allow has this class: it waits for capacity here` in {w.message | some w in result.warnings}
}

test_only_what_is_short_is_taken if {
	result := decision.result with input as _degrade(3, {}, _fleet)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	_steps(result) == [[1, "initech-spot", "big", "preempt", 0, 4]]
	result.warnings == [w | some w in result.warnings; w.code != "DEGRADE_SHORT"]
}

test_nothing_short_nothing_taken if {
	result := decision.result with input as _degrade(0, {}, _fleet)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.constraints.degradation.steps == []
	result.constraints.degradation.sufficient == true
}

test_the_tier_the_room_is_for_bounds_who_gives if {
	result := decision.result with input as _degrade(20, {"for_tier": "standard"}, _fleet)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	_steps(result) == [
		[1, "initech-spot", "big", "preempt", 0, 4],
		[2, "initech-spot", "small", "preempt", 0, 2],
	]
	{[k.deployment, k.why] | some k in result.constraints.degradation.kept} == {
		["train", "tier"], ["eval", "tier"], ["chat", "tier"],
	}
	result.constraints.degradation.sufficient == false
	[w.message | some w in result.warnings; w.code == "DEGRADE_SHORT"] == [
		"the plan frees 6 of the 20 H100-80GB GPUs short (room for tier standard); 3 deployments kept (tier not below, at their minimum or within their entitlement)",
	]
}

test_enterprise_keeps_its_entitlement_without_consent if {
	# acme-eu is entitled to 4 H100s and holds 6: only the 2 above its entitlement can go
	result := decision.result with input as _degrade(8, {"cluster": "eu-west"}, _fleet)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	_steps(result) == [[1, "acme-eu", "chat", "scale", 4, 2]]
	result.constraints.degradation.replace_order == [
		{"tenant": "acme-eu", "deployment": "chat", "tier": "enterprise", "may_move_to": []},
		{"tenant": "globex", "deployment": "train", "tier": "standard", "may_move_to": ["us-east"]},
	]
	{w.code | some w in result.warnings} == {"DEGRADE_SCALE", "DEGRADE_ENTITLEMENT_KEPT", "DEGRADE_SHORT"}
	`deployment "chat" of tenant "acme-eu" (tier enterprise) kept at 4 of 6 replicas: fewer would leave it below its entitlement of 4 H100-80GB GPUs, and it has not consented` in {w.message | some w in result.warnings}
}

test_enterprise_that_consents_goes_to_its_minimum if {
	tenants := object.union(testdata.tenants, {"acme-eu": {"allow_preemption": true}})
	deployments := [_dep("acme-eu", "chat", 1, 6, "eu-west", {"min_replicas": 1})]
	result := decision.result with input as _degrade(8, {}, deployments)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as tenants
	_steps(result) == [[1, "acme-eu", "chat", "scale", 1, 5]]
	not "DEGRADE_ENTITLEMENT_KEPT" in {w.code | some w in result.warnings}
}

test_standard_without_a_minimum_is_preempted_and_at_its_minimum_kept if {
	deployments := [
		_dep("globex", "a", 1, 2, "us-east", {}),
		_dep("globex", "b", 1, 2, "us-east", {"min_replicas": 2}),
	]
	result := decision.result with input as _degrade(4, {}, deployments)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	_steps(result) == [[1, "globex", "a", "preempt", 0, 2]]
	result.constraints.degradation.kept == [
		{"tenant": "globex", "deployment": "b", "tier": "standard", "replicas": 2, "why": "minimum"},
	]

	# globex's residency (any) lets it move to every cluster with shared H100s
	[s.may_move_to | some s in result.constraints.degradation.steps] == [["eu-west", "us-east"]]
}

test_region_scope if {
	result := decision.result with input as _degrade(1, {"region": "eu-west-1"}, _fleet)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	_steps(result) == [[1, "acme-eu", "chat", "scale", 4, 2]]
	contains(
		[w.message | some w in result.warnings; w.code == "DEGRADE_SCALE"][0],
		"in region eu-west-1",
	)
}

test_every_affected_deployment_in_replace_order_highest_tier_first if {
	deployments := [
		_dep("initech-spot", "batch", 2, 1, "us-east", {"affected": true}),
		_dep("globex", "train", 2, 1, "us-east", {"affected": true}),
	]
	result := decision.result with input as _degrade(2, {"for_tier": "standard"}, deployments)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	_steps(result) == [[1, "initech-spot", "batch", "preempt", 0, 2]]
	[r.deployment | some r in result.constraints.degradation.replace_order] == ["train", "batch"]
}

test_unknown_class_and_cluster_denied if {
	result := decision.result with input as _degrade(1, {"gpu_class": "B200", "cluster": "mars"}, [])
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	[r.code | some r in result.reasons] == ["DEGRADE_CLASS_UNKNOWN", "DEGRADE_CLUSTER_UNKNOWN"]
	not result.constraints.degradation
	result.reasons[0].message == `degradation of GPU class "B200": the fleet has no such class (known: [A100-40GB, H100-80GB, MI300X])`
	result.reasons[1].message == `degradation of B200 in cluster "mars": the fleet has no such cluster`
}

test_unknown_tenant_denied if {
	result := decision.result with input as _degrade(1, {}, [_dep("hooli", "search", 1, 1, "us-east", {})])
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "DEGRADE_TENANT_UNKNOWN",
		"message": `deployment "search" of tenant "hooli": the tenant is not in the bundle, so its tier is unknown`,
		"policy": "gpupaas.degradation",
	}]
}

package gpupaas.tenancy_test

import data.gpupaas.decision
import data.gpupaas.lib
import data.gpupaas.nodes
import data.gpupaas.tenancy
import data.gpupaas.testdata

_samples := data.gpupaas.tenancy.samples

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

_hooli := {
	"name": "hooli", "tier": "standard", "isolation": "shared", "data_residency": "eu-only",
	"allow_preemption": true, "allow_gpu_sharing": true, "namespaces": ["hooli-ml"],
	"entitlements": {"A100-40GB": 8, "MI300X": 2},
}

_create(policy) := {"kind": "create_tenant", "tenant": policy.name, "create_tenant": {"policy": policy}}

test_create_tenant_allowed if {
	result := decision.result with input as _create(_hooli)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.reasons == []
	result.constraints == {"eligible_clusters": ["eu-central", "eu-west"]}
}

test_tenant_exists if {
	result := decision.result with input as _create(testdata.tenants["acme-eu"])
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	result.reasons == [{"code": "TENANT_EXISTS", "message": `tenant "acme-eu" already exists`, "policy": "gpupaas.tenancy"}]
}

test_spot_tenant_forbidding_preemption if {
	result := decision.result with input as _create(object.union(_hooli, {"tier": "spot", "allow_preemption": false}))
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "TENANT_CONTRADICTION",
		"message": `tenant "hooli" is tier spot but sets allow_preemption false; spot capacity is always preemptible`,
		"policy": "gpupaas.tenancy",
	}]
}

test_unsatisfiable_residency if {
	result := decision.result with input as _create(object.union(_hooli, {"data_residency": "jp-only"}))
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants

	# the entitlements are not reported unsatisfiable on top of the residency
	testdata.codes(result) == ["RESIDENCY_UNSATISFIABLE"]
	result.constraints == {"eligible_clusters": []}
}

test_unknown_and_unsatisfiable_entitlements if {
	policy := object.union(_hooli, {"data_residency": "us-only", "entitlements": {"A100-40GB": 8, "MI300X": 2, "B200": 1}})
	result := decision.result with input as _create(policy)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [
		{"code": "ENTITLEMENT_UNSATISFIABLE", "message": `tenant "hooli" is entitled to GPU class MI300X, which no cluster of its data_residency us-only offers`, "policy": "gpupaas.tenancy"},
		{"code": "GPU_CLASS_UNKNOWN", "message": `tenant "hooli" is entitled to GPU class "B200", which the fleet does not define`, "policy": "gpupaas.tenancy"},
	]
}

test_namespace_conflict if {
	result := decision.result with input as _create(object.union(_hooli, {"namespaces": ["hooli-ml", "globex-ml"]}))
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "NAMESPACE_CONFLICT",
		"message": `namespace "globex-ml" of tenant "hooli" is already owned by tenant(s) [globex]`,
		"policy": "gpupaas.tenancy",
	}]
}

test_finding_paths if {
	policy := object.union(_hooli, {"tier": "spot", "allow_preemption": false, "namespaces": ["hooli-ml", "acme-prod"], "entitlements": {"B200": 1}})
	findings := tenancy.findings(policy) with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	{[f.code, f.path] | some f in findings} == {
		["TENANT_CONTRADICTION", ["tenant", "allow_preemption"]],
		["NAMESPACE_CONFLICT", ["tenant", "namespaces", 1]],
		["GPU_CLASS_UNKNOWN", ["tenant", "entitlements", "B200"]],
	}
}

test_dedicated_tenant_without_pool_needs_approval if {
	policy := object.union(object.remove(_hooli, ["entitlements"]), {"isolation": "dedicated", "entitlements": {"H100-80GB": 8}})
	result := decision.result with input as _create(policy)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "NEEDS_APPROVAL"
	result.reasons == [{
		"code": "DEDICATED_POOL_PROVISIONING",
		"message": `dedicated tenant "hooli" has no dedicated pool in the fleet; one must be provisioned`,
		"policy": "gpupaas.tenancy",
	}]
	result.constraints == {"eligible_clusters": ["eu-west"]}
}

test_dedicated_tenant_with_pool if {
	# acme-eu's pool exists already: recreating it (after offboarding) needs no provisioning
	policy := testdata.tenants["acme-eu"]
	result := decision.result with input as _create(policy)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as object.remove(testdata.tenants, ["acme-eu"])
	result.outcome == "ALLOW"
}

# hooli dedicated and US-only, entitled to MI300X, which no pool of a US cluster offers
_dedicated_hooli := object.union(object.remove(_hooli, ["entitlements"]), {"isolation": "dedicated", "data_residency": "us-only", "entitlements": {"MI300X": 8}})

_mi300x_pool(tenant) := {
	"gpu_class": "MI300X", "isolation": "dedicated", "tenant": tenant,
	"sharing_strategy": "none", "nodes": 1, "gpus_per_node": 8,
}

test_dedicated_tenant_with_a_pool_awaiting_it if {
	# The operator racked and declared hooli's MI300X pool in us-east before hooli signed: the
	# lifecycle carries it under `awaiting` while hooli is not in the bundle (pdp/lifecycle/fleet.py),
	# and onboarding hooli uses it: no pool to provision, its class offered, its cluster eligible.
	fleet := object.union(testdata.fleet, {"awaiting": {"us-east": {"hooli-mi300x": _mi300x_pool("hooli")}}})
	result := decision.result with input as _create(_dedicated_hooli)
		with data.gpupaas.fleet as fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.reasons == []
	result.constraints == {"eligible_clusters": ["us-east"]}
}

test_a_pool_awaiting_another_tenant_or_outside_the_residency_is_not_the_new_tenants if {
	fleet := object.union(testdata.fleet, {"awaiting": {
		"us-east": {"umbrella-mi300x": _mi300x_pool("umbrella")},
		"eu-central": {"hooli-mi300x": _mi300x_pool("hooli")},
	}})
	result := decision.result with input as _create(_dedicated_hooli)
		with data.gpupaas.fleet as fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	result.reasons == [{
		"code": "ENTITLEMENT_UNSATISFIABLE",
		"message": `tenant "hooli" is entitled to GPU class MI300X, which no cluster of its data_residency us-only offers`,
		"policy": "gpupaas.tenancy",
	}]
	result.constraints == {"eligible_clusters": []}
	approvals := tenancy.approval with input as _create(_dedicated_hooli)
		with data.gpupaas.fleet as fleet
		with data.gpupaas.tenants as testdata.tenants
	{r.code | some r in approvals} == {"DEDICATED_POOL_PROVISIONING"}
}

test_a_pool_awaiting_its_tenant_is_no_pool_of_the_fleet if {
	# Not among the clusters' pools: no TENANT_UNKNOWN for it, no dedicated pool, node or capacity
	# that placement or admission would read.
	pool := object.union(_mi300x_pool("hooli"), {"node_names": ["us-hooli-1"]})
	fleet := object.union(testdata.fleet, {"awaiting": {"us-east": {"hooli-mi300x": pool}}})
	tenancy.config_violations == set() with data.gpupaas.fleet as fleet
		with data.gpupaas.tenants as testdata.tenants
	not lib.dedicated_index.hooli with data.gpupaas.fleet as fleet
	not lib.pool_gpus["us-east"]["hooli-mi300x"] with data.gpupaas.fleet as fleet
	not nodes.node_places["us-hooli-1"] with data.gpupaas.fleet as fleet
	not lib.pool_index.MI300X.US with data.gpupaas.fleet as fleet
}

test_update_quotas_unsatisfiable if {
	result := decision.result with input as {"kind": "update_quotas", "tenant": "initech-spot", "update_quotas": {"entitlements": {"A100-40GB": 16, "MI300X": 4}}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	result.reasons == [{
		"code": "ENTITLEMENT_UNSATISFIABLE",
		"message": `new entitlement of tenant "initech-spot" for GPU class MI300X cannot be satisfied: no cluster of its data_residency us-only offers it`,
		"policy": "gpupaas.tenancy",
	}]
}

test_example_data_has_no_config_violations if {
	violations := tenancy.config_violations with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	violations == set()
}

test_config_violations if {
	tenants := object.union(testdata.tenants, {
		"initech-spot": {"allow_preemption": false},
		"hooli": object.union(_hooli, {"namespaces": ["globex-ml"]}),
	})
	fleet := object.union(testdata.fleet, {"clusters": {
		"eu-central": {"pools": {"eu-b200": {"gpu_class": "B200", "isolation": "shared", "nodes": 1, "gpus_per_node": 8}}},
		"us-east": {"pools": {"umbrella-h100": {"gpu_class": "H100-80GB", "isolation": "dedicated", "tenant": "umbrella", "nodes": 1, "gpus_per_node": 8}}},
	}})
	violations := tenancy.config_violations with data.gpupaas.fleet as fleet
		with data.gpupaas.tenants as tenants
	{[v.document, object.get(v, "tenant", ""), v.code, v.path] | some v in violations} == {
		["tenant", "initech-spot", "TENANT_CONTRADICTION", ["tenant", "allow_preemption"]],
		["tenant", "hooli", "NAMESPACE_CONFLICT", ["tenant", "namespaces", 0]],
		["tenant", "globex", "NAMESPACE_CONFLICT", ["tenant", "namespaces", 0]],
		["fleet", "", "GPU_CLASS_UNKNOWN", ["fleet", "clusters", "eu-central", "pools", "eu-b200", "gpu_class"]],
		["fleet", "", "TENANT_UNKNOWN", ["fleet", "clusters", "us-east", "pools", "umbrella-h100", "tenant"]],
	}
}

test_fleet_node_names_violations if {
	fleet := object.union(testdata.fleet, {"clusters": {"us-east": {"pools": {
		"us-a100-mig": {"node_names": ["us-a100-mig-1", "eu-acme-2"]},
		"us-a100-spot": {"node_names": ["us-spot-1"]},
	}}}})
	violations := tenancy.config_violations with data.gpupaas.fleet as fleet
		with data.gpupaas.tenants as testdata.tenants
	{[v.code, v.path, v.message] | some v in violations} == {
		[
			"NODE_NAME_CONFLICT", ["fleet", "clusters", "eu-west", "pools", "acme-h100-dedicated", "node_names", 1],
			`node "eu-acme-2" of pool "acme-h100-dedicated" of cluster "eu-west" is also listed by [us-east/us-a100-mig]`,
		],
		[
			"NODE_NAME_CONFLICT", ["fleet", "clusters", "us-east", "pools", "us-a100-mig", "node_names", 1],
			`node "eu-acme-2" of pool "us-a100-mig" of cluster "us-east" is also listed by [eu-west/acme-h100-dedicated]`,
		],
		[
			"NODE_COUNT_MISMATCH", ["fleet", "clusters", "us-east", "pools", "us-a100-spot", "node_names"],
			`pool "us-a100-spot" of cluster "us-east" lists 1 node names for 4 nodes`,
		],
	}
}

_sla(tenant, change) := {"kind": "change_sla", "tenant": tenant, "change_sla": change}

test_sla_upgrade_needs_approval if {
	result := decision.result with input as _sla("globex", {"tier": "enterprise"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "NEEDS_APPROVAL"
	result.reasons == [{
		"code": "SLA_APPROVAL_REQUIRED",
		"message": `tenant "globex" moves from tier standard to enterprise: its priority class rises from gpupaas-standard to gpupaas-enterprise`,
		"policy": "gpupaas.tenancy",
	}]
}

test_sla_downgrade_within_entitlement_is_allowed if {
	result := decision.result with input as object.union(_sla("acme-eu", {"tier": "standard", "isolation": "shared"}), {"usage": {"H100-80GB": 4}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.reasons == []
}

test_sla_move_to_dedicated_with_a_pool_needs_approval if {
	tenants := object.union(testdata.tenants, {"acme-eu": {"isolation": "shared"}})
	result := decision.result with input as _sla("acme-eu", {"isolation": "dedicated"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as tenants
	result.outcome == "NEEDS_APPROVAL"
	result.reasons == [{
		"code": "SLA_APPROVAL_REQUIRED",
		"message": `tenant "acme-eu" moves from shared to dedicated isolation (pools [acme-h100-dedicated])`,
		"policy": "gpupaas.tenancy",
	}]
}

test_sla_move_to_dedicated_without_a_pool_is_denied if {
	result := decision.result with input as _sla("globex", {"tier": "enterprise", "isolation": "dedicated"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	result.reasons == [{
		"code": "ISOLATION_UNSATISFIABLE",
		"message": `no dedicated pool in data_residency any of tenant "globex" offers GPU class [A100-40GB, H100-80GB]`,
		"policy": "gpupaas.tenancy",
	}]
}

test_sla_move_to_shared_without_a_shared_pool_is_denied if {
	# only the dedicated pool serves acme-eu's H100s once the shared pool is gone
	fleet := object.union(testdata.fleet, {"clusters": {"eu-west": {"pools": {"eu-h100-shared": {"gpu_class": "A100-40GB"}}}}})
	result := decision.result with input as _sla("acme-eu", {"isolation": "shared"})
		with data.gpupaas.fleet as fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["ISOLATION_UNSATISFIABLE"]
}

test_sla_downgrade_to_spot_of_a_protected_tenant_is_a_contradiction if {
	result := decision.result with input as _sla("globex", {"tier": "spot"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	result.reasons == [{
		"code": "TENANT_CONTRADICTION",
		"message": `tenant "globex" is tier spot but sets allow_preemption false; spot capacity is always preemptible`,
		"policy": "gpupaas.tenancy",
	}]
}

test_sla_downgrade_to_spot_above_the_entitlement_is_denied if {
	tenants := object.union(testdata.tenants, {"globex": {"allow_preemption": true}})
	intent := object.union(_sla("globex", {"tier": "spot"}), {"usage": {"H100-80GB": 10, "A100-40GB": 4}})
	result := decision.result with input as intent
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as tenants
	result.reasons == [{
		"code": "SLA_DOWNGRADE_OVER_ENTITLEMENT",
		"message": `tenant "globex" runs 10 H100-80GB GPUs, above its entitlement of 8; tier spot refuses usage above the entitlement`,
		"policy": "gpupaas.tenancy",
	}]

	# within the entitlement the same downgrade is allowed
	allowed := decision.result with input as object.union(intent, {"usage": {"H100-80GB": 8}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as tenants
	allowed.outcome == "ALLOW"
}

test_sla_change_of_unknown_tenant if {
	result := decision.result with input as _sla("nobody", {"tier": "standard"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["TENANT_UNKNOWN"]
}

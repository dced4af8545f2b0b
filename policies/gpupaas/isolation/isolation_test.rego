package gpupaas.isolation_test

import data.gpupaas.decision
import data.gpupaas.isolation
import data.gpupaas.testdata

_samples := data.gpupaas.isolation.samples

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

_admit(namespace, workload) := {"kind": "admit_workload", "admit_workload": object.union({"namespace": namespace, "name": "w"}, workload)}

test_foreign_tolerations if {
	tolerations := [
		{"key": "gpupaas.io/dedicated", "operator": "Equal", "value": "acme-eu", "effect": "NoSchedule"},
		{"key": "gpupaas.io/dedicated", "value": "acme-eu"},
		{"key": "gpupaas.io/dedicated", "operator": "Exists"},
		{"operator": "Exists", "effect": "NoSchedule"},
		{"key": "gpupaas.io/dedicated", "operator": "Exists", "effect": "NoExecute"},
		{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
	]
	reasons := isolation.deny with input as _admit("globex-ml", {"tolerations": tolerations})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	{r.code | some r in reasons} == {"ISOLATION_FOREIGN_POOL"}
	[r.message | some r in reasons] == [
		`toleration 0 of workload "globex-ml/w" (key "gpupaas.io/dedicated", operator Equal, value "acme-eu") tolerates the gpupaas.io/dedicated taint of dedicated pools of tenants other than "globex"`,
		`toleration 1 of workload "globex-ml/w" (key "gpupaas.io/dedicated", operator Equal, value "acme-eu") tolerates the gpupaas.io/dedicated taint of dedicated pools of tenants other than "globex"`,
		`toleration 2 of workload "globex-ml/w" (key "gpupaas.io/dedicated", operator Exists, value "") tolerates the gpupaas.io/dedicated taint of dedicated pools of tenants other than "globex"`,
		`toleration 3 of workload "globex-ml/w" (key "", operator Exists, value "") tolerates the gpupaas.io/dedicated taint of dedicated pools of tenants other than "globex"`,
	]
}

test_own_toleration_allowed if {
	tolerations := [{"key": "gpupaas.io/dedicated", "operator": "Equal", "value": "acme-eu", "effect": "NoSchedule"}]
	reasons := isolation.deny with input as _admit("acme-prod", {"tolerations": tolerations, "node_selector": {"gpupaas.io/dedicated-tenant": "acme-eu"}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	reasons == set()
}

test_dedicated_tenant_exists_toleration_is_foreign if {
	result := decision.result with input as _admit("acme-prod", {"tolerations": [{"key": "gpupaas.io/dedicated", "operator": "Exists"}]})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["ISOLATION_FOREIGN_POOL"]
}

test_foreign_pool_selector if {
	result := decision.result with input as _admit("globex-ml", {"node_selector": {"gpupaas.io/dedicated-tenant": "acme-eu"}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "ISOLATION_FOREIGN_POOL",
		"message": `workload "globex-ml/w" of tenant "globex" selects gpupaas.io/dedicated-tenant=acme-eu, the dedicated pool of another tenant`,
		"policy": "gpupaas.isolation",
	}]
}

_place(namespace, nodes) := {"kind": "place_workload", "place_workload": {"namespace": namespace, "name": "w", "nodes": nodes}}

_codes_by_node(rejections) := {name: sort({r.code | some r in reasons}) | some name, reasons in rejections}

test_node_rejections_of_shared_tenant if {
	nodes := [
		{"name": "acme-1", "labels": {"gpupaas.io/dedicated-tenant": "acme-eu"}, "tenants": ["acme-eu"]},
		{"name": "shared-1", "labels": {}, "tenants": ["globex", "initech-spot"]},
		{"name": "shared-2", "labels": {}, "tenants": ["acme-eu"]},
		{"name": "shared-3"},
	]
	rejections := isolation.node_rejections with input as _place("globex-ml", nodes)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	_codes_by_node(rejections) == {
		"acme-1": ["ISOLATION_FOREIGN_POOL", "ISOLATION_NODE_OCCUPIED"],
		"shared-2": ["ISOLATION_NODE_OCCUPIED"],
	}
	[r.message | some r in rejections["shared-2"]] == [`node "shared-2" hosts pods of tenant "acme-eu" (isolation dedicated) and tenant "globex" has isolation shared; a dedicated tenant shares no node`]
}

test_node_rejections_of_dedicated_tenant if {
	nodes := [
		{"name": "acme-1", "labels": {"gpupaas.io/dedicated-tenant": "acme-eu"}, "tenants": ["acme-eu"]},
		{"name": "acme-2", "labels": {"gpupaas.io/dedicated-tenant": "acme-eu"}, "tenants": ["globex"]},
		{"name": "shared-1", "labels": {}},
		{"name": "other-1", "labels": {"gpupaas.io/dedicated-tenant": "umbrella"}},
	]
	rejections := isolation.node_rejections with input as _place("acme-prod", nodes)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	_codes_by_node(rejections) == {
		"acme-2": ["ISOLATION_NODE_OCCUPIED"],
		"shared-1": ["ISOLATION_SHARED_POOL"],
		"other-1": ["ISOLATION_FOREIGN_POOL", "ISOLATION_SHARED_POOL"],
	}
	[r.message | some r in rejections["shared-1"]] == [`node "shared-1" is not in a dedicated pool of tenant "acme-eu" (label gpupaas.io/dedicated-tenant="")`]
}

test_occupants_named_by_namespace_map_to_their_tenants if {
	nodes := [
		{"name": "shared-1", "namespaces": ["acme-prod", "kube-system"]},
		{"name": "shared-2", "namespaces": ["initech-batch", "kube-system"]},
	]
	rejections := isolation.node_rejections with input as _place("globex-ml", nodes)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	_codes_by_node(rejections) == {"shared-1": ["ISOLATION_NODE_OCCUPIED"]}
	[r.message | some r in rejections["shared-1"]] == [`node "shared-1" hosts pods of tenant "acme-eu" (isolation dedicated) and tenant "globex" has isolation shared; a dedicated tenant shares no node`]
}

test_isolation_constraint_of_sharing_request if {
	result := decision.result with input as {"kind": "request_gpu_sharing", "tenant": "globex", "request_gpu_sharing": {"mode": "mig"}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.constraints.isolation == {"mode": "shared", "gpu_sharing": true, "sharing_strategies": ["mig", "none", "time-slicing"], "dedicated_pools": []}
}

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

# ---- workloads of namespaces no tenant owns: no dedicated pool is theirs ----

test_a_workload_without_tenant_may_not_reach_a_dedicated_pool if {
	workload := {
		"tolerations": [{"key": "gpupaas.io/dedicated", "operator": "Exists"}],
		"node_selector": {"gpupaas.io/pool": "acme-h100-dedicated"},
	}
	result := decision.result with input as _admit("default", workload)
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	result.tenant == ""
	[r.message | some r in result.reasons] == [
		`toleration 0 of workload "default/w" (key "gpupaas.io/dedicated", operator Exists, value "") tolerates the gpupaas.io/dedicated taint of dedicated pools of any tenant (namespace "default" belongs to no tenant)`,
		`workload "default/w" (namespace "default" belongs to no tenant) selects nodes of the dedicated pools of tenant(s) [acme-eu] by gpupaas.io/pool or gpupaas.io/dedicated-tenant (pools [acme-h100-dedicated])`,
	]
}

test_a_workload_without_tenant_selecting_a_dedicated_tenant_or_naming_its_node if {
	selector := decision.result with input as _admit("default", {"node_selector": {"gpupaas.io/dedicated-tenant": "acme-eu"}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in selector.reasons] == [`workload "default/w" (namespace "default" belongs to no tenant) selects gpupaas.io/dedicated-tenant=acme-eu, the dedicated pool of another tenant`]
	named := decision.result with input as _admit("default", {"node_name": "eu-acme-2"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in named.reasons] == [`workload "default/w" (namespace "default" belongs to no tenant) names node "eu-acme-2" (spec.nodeName), which by the fleet data (pool acme-h100-dedicated of cluster eu-west) belongs to the dedicated pool of tenant "acme-eu"`]
	shared := decision.result with input as _admit("default", {"node_name": "eu-shared-2", "tolerations": [{"key": "example.com/other", "operator": "Exists"}]})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	shared.outcome == "ALLOW"
}

# ---- pools selected by gpupaas.io/pool or by node affinity ----

test_foreign_pools_selected_by_pool_label_or_affinity if {
	ways := [
		{"node_selector": {"gpupaas.io/pool": "acme-h100-dedicated"}},
		{"node_affinity": [[{"key": "gpupaas.io/pool", "operator": "In", "values": ["eu-h100-shared", "acme-h100-dedicated"]}]]},
		{"node_affinity": [[{"key": "gpupaas.io/dedicated-tenant", "operator": "In", "values": ["acme-eu"]}]]},
		{"node_affinity": [[{"key": "gpupaas.io/dedicated-tenant", "operator": "Exists"}]]},
	]
	every way in ways {
		reasons := isolation.deny with input as _admit("globex-ml", way)
			with data.gpupaas.fleet as testdata.fleet
			with data.gpupaas.tenants as testdata.tenants
		[r.message | some r in reasons] == [`workload "globex-ml/w" of tenant "globex" selects nodes of the dedicated pools of tenant(s) [acme-eu] by gpupaas.io/pool or gpupaas.io/dedicated-tenant (pools [acme-h100-dedicated])`]
	}
}

test_own_or_shared_pools_selected_by_pool_label if {
	ways := [
		["acme-prod", {"node_selector": {"gpupaas.io/pool": "acme-h100-dedicated"}}],
		["acme-prod", {"node_affinity": [[{"key": "gpupaas.io/dedicated-tenant", "operator": "Exists"}]]}],
		["globex-ml", {"node_selector": {"gpupaas.io/pool": "eu-h100-shared"}}],
		["globex-ml", {"node_affinity": [[{"key": "gpupaas.io/pool", "operator": "NotIn", "values": ["eu-h100-shared"]}]]}],
	]
	every case in ways {
		reasons := isolation.deny with input as _admit(case[0], case[1])
			with data.gpupaas.fleet as testdata.fleet
			with data.gpupaas.tenants as testdata.tenants
		reasons == set()
	}
}

# ---- nodes a workload names ----

test_a_shared_tenant_naming_a_dedicated_node if {
	reasons := isolation.deny with input as _admit("globex-ml", {"node_affinity": [[{"key": "metadata.name", "operator": "In", "values": ["eu-acme-1"]}]]})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in reasons] == [`workload "globex-ml/w" of tenant "globex" names node "eu-acme-1" (node affinity term 0), which by the fleet data (pool acme-h100-dedicated of cluster eu-west) belongs to the dedicated pool of tenant "acme-eu"`]
}

test_a_dedicated_tenant_naming_a_node_outside_its_pool if {
	shared := isolation.deny with input as _admit("acme-prod", {"node_name": "eu-shared-1"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in shared] == [`workload "acme-prod/w" names node "eu-shared-1" (spec.nodeName), which by the fleet data (pool eu-h100-shared of cluster eu-west) is not in a dedicated pool of tenant "acme-eu"`]
	unknown := isolation.deny with input as _admit("acme-prod", {"node_selector": {"kubernetes.io/hostname": "ghost-1"}})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in unknown] == [`workload "acme-prod/w" names node "ghost-1" (node selector kubernetes.io/hostname), which the fleet data does not list, so it is not known to be in a dedicated pool of tenant "acme-eu"`]
	own := isolation.deny with input as _admit("acme-prod", {"node_name": "eu-acme-2"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	own == set()
}

test_a_named_node_is_judged_by_the_labels_the_caller_sends if {
	intent := {"kind": "place_workload", "place_workload": {
		"namespace": "default", "name": "w", "node_name": "ghost-1",
		"nodes": [{"name": "ghost-1", "labels": {"gpupaas.io/dedicated-tenant": "acme-eu"}}],
	}}
	reasons := isolation.deny with input as intent
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in reasons] == [`workload "default/w" (namespace "default" belongs to no tenant) names node "ghost-1" (spec.nodeName), which by its labels belongs to the dedicated pool of tenant "acme-eu"`]
}

# ---- device claims (Dynamic Resource Allocation): a dedicated tenant must pin its pool ----

test_device_claims_of_a_dedicated_tenant_must_pin_its_pool if {
	eu := [{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]}]
	unpinned := decision.result with input as _admit("acme-prod", {"resource_claims": ["gpu"], "node_affinity": [eu]})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	unpinned.reasons == [{
		"code": "ISOLATION_SHARED_POOL",
		"message": `workload "acme-prod/w" of dedicated tenant "acme-eu" claims devices through resourceClaims [gpu], which the scheduler extender does not judge, and does not pin its pool; select gpupaas.io/dedicated-tenant=acme-eu or gpupaas.io/pool In [acme-h100-dedicated]`,
		"policy": "gpupaas.isolation",
	}]
	pins := [
		{"node_affinity": [array.concat(eu, [{"key": "gpupaas.io/pool", "operator": "In", "values": ["acme-h100-dedicated"]}])]},
		{"node_affinity": [array.concat(eu, [{"key": "gpupaas.io/dedicated-tenant", "operator": "In", "values": ["acme-eu"]}])]},
		{"node_affinity": [eu], "node_selector": {"gpupaas.io/dedicated-tenant": "acme-eu"}},
		{"node_affinity": [eu], "node_selector": {"gpupaas.io/pool": "acme-h100-dedicated"}},
		{"node_name": "eu-acme-1"},
		{"node_affinity": [[{"key": "kubernetes.io/hostname", "operator": "In", "values": ["eu-acme-1", "eu-acme-2"]}]]},
	]
	every pin in pins {
		pinned := decision.result with input as _admit("acme-prod", object.union({"resource_claims": ["gpu"]}, pin))
			with data.gpupaas.fleet as testdata.fleet
			with data.gpupaas.tenants as testdata.tenants
		pinned.outcome == "ALLOW"
	}
	shared_pool := decision.result with input as _admit("acme-prod", {"resource_claims": ["gpu"], "node_affinity": [array.concat(eu, [{"key": "gpupaas.io/pool", "operator": "In", "values": ["eu-h100-shared"]}])]})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(shared_pool) == ["ISOLATION_SHARED_POOL"]
}

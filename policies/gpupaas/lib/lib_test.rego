package gpupaas.lib_test

import data.gpupaas.lib
import data.gpupaas.testdata

test_jurisdiction_allowed if {
	lib.jurisdiction_allowed("any", "US")
	lib.jurisdiction_allowed("eu-only", "EU")
	not lib.jurisdiction_allowed("eu-only", "US")
	not lib.jurisdiction_allowed("eu", "EU")
}

test_region_jurisdiction_index if {
	index := lib.region_jurisdiction with data.gpupaas.fleet as testdata.fleet
	index == {"eu-west-1": "EU", "eu-central-1": "EU", "us-east-1": "US"}
}

test_residency_clusters if {
	clusters := lib.residency_clusters(testdata.tenants["acme-eu"]) with data.gpupaas.fleet as testdata.fleet
	clusters == {"eu-west", "eu-central"}
}

test_tiers if {
	lib.priority_class_ranks == {"gpupaas-enterprise": 3, "gpupaas-standard": 2, "gpupaas-spot": 1}
}

test_gpu_resources if {
	lib.is_gpu_resource("nvidia.com/gpu")
	lib.is_gpu_resource("amd.com/gpu")
	lib.is_gpu_resource("nvidia.com/gpu.shared")
	lib.is_gpu_resource("nvidia.com/mig-1g.10gb")
	not lib.is_gpu_resource("cpu")
	not lib.is_gpu_resource("nvidia.com/gpu.product")
	lib.resource_vendor("amd.com/gpu") == "amd"
	lib.resource_vendor("nvidia.com/mig-1g.10gb") == "nvidia"
}

test_classes_of_labels if {
	classes := lib.classes_of_labels({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-SHARED", "amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"}) with data.gpupaas.fleet as testdata.fleet
	classes == {"A100-40GB", "MI300X"}
	unknown := lib.classes_of_labels({"nvidia.com/gpu.product": "NVIDIA-B200"}) with data.gpupaas.fleet as testdata.fleet
	unknown == set()
}

test_namespace_index_with_conflict if {
	tenants := object.union(testdata.tenants, {"hooli": {"name": "hooli", "namespaces": ["globex-ml", "hooli"]}})
	index := lib.namespace_tenant with data.gpupaas.tenants as tenants
	index["globex-ml"] == "globex"
	index.hooli == "hooli"
	index["acme-staging"] == "acme-eu"
	owners := lib.namespace_owners with data.gpupaas.tenants as tenants
	owners["globex-ml"] == {"globex", "hooli"}
}

test_eligible_pools_and_capacity if {
	globex := testdata.tenants.globex
	pools := lib.eligible_pools(globex, {"A100-40GB"}, lib.sharing_strategies) with data.gpupaas.fleet as testdata.fleet
	pools == {["eu-west", "eu-a100-timeslice"], ["us-east", "us-a100-mig"], ["us-east", "us-a100-spot"]}
	capacity := lib.capacity_of(pools) with data.gpupaas.fleet as testdata.fleet
	capacity == 64
	dedicated := lib.eligible_pools(testdata.tenants["acme-eu"], {"H100-80GB"}, {"none"}) with data.gpupaas.fleet as testdata.fleet
	dedicated == {["eu-west", "acme-h100-dedicated"]}
}

test_usable_strategies if {
	lib.usable_strategies(testdata.tenants["acme-eu"]) == {"none"}
	lib.usable_strategies(testdata.tenants.globex) == {"none", "time-slicing", "mps", "mig"}
}

test_names if {
	lib.names({"b", "a"}) == "a, b"
	lib.names([]) == ""
}

test_named_tenant_kinds_are_the_kinds_that_name_an_existing_tenant if {
	lib.named_tenant_kinds == ((lib.intent_kinds - lib.workload_kinds) - {"create_tenant"}) - lib.fleet_kinds
}

test_priority_class_ranks_are_those_of_the_tiers if {
	lib.priority_class_ranks == {tier.priority_class: tier.rank | some tier in lib.tiers}
}

test_message_joins_strings if {
	lib.message([`tenant "`, "acme-eu", `" asks for `, "H100-80GB"]) == `tenant "acme-eu" asks for H100-80GB`
}

test_message_writes_counts_in_decimal if {
	lib.message(["term ", 0, " asks for ", 8, " GPUs"]) == "term 0 asks for 8 GPUs"
}

# a value of another type (an unchecked input) still gives a message, so the reason still fires
test_message_of_a_value_of_another_type if {
	lib.message(["kind ", true, " ", ["a"], " ", {"k": null}]) == `kind true ["a"] {"k": null}`
}

# a reason fires for an intent whose kind is not even a string
test_message_of_an_intent_kind_that_is_no_string if {
	reasons := data.gpupaas.decision.result.reasons with input as {"kind": 5}
	reasons[0].code == "INTENT_UNSUPPORTED"
	startswith(reasons[0].message, `intent kind "5" is not supported`)
}

test_kind_classes_are_the_kind_sets if {
	{k | some k in lib.intent_kinds; lib.is_workload with input as {"kind": k}} == lib.workload_kinds
	{k | some k in lib.intent_kinds; lib.names_tenant with input as {"kind": k}} == lib.named_tenant_kinds
	{k | some k in lib.intent_kinds; lib.names_class with input as {"kind": k}} == lib.class_kinds
	{k | some k in lib.intent_kinds; lib.schedules with input as {"kind": k}} == {"deploy_model", "scale", "admit_workload", "place_workload"}
	{k | some k in lib.intent_kinds; lib.lists_clusters with input as {"kind": k}} == {"deploy_model", "scale", "request_gpu_sharing", "admit_workload", "place_workload"}
}

# tenant_name's kind sets are named_tenant_kinds (input.tenant) and workload_kinds (the namespace)
test_tenant_name_kinds_are_the_kind_sets if {
	by_name := {k |
		some k in lib.intent_kinds
		lib.tenant_name == "globex" with input as {"kind": k, "tenant": "globex"}
			with data.gpupaas.tenants as testdata.tenants
	}
	by_name == lib.named_tenant_kinds
	by_namespace := {k |
		some k in lib.intent_kinds
		lib.tenant_name == "globex" with input as {"kind": k, k: {"namespace": "globex-ml"}}
			with data.gpupaas.tenants as testdata.tenants
	}
	by_namespace == lib.workload_kinds
}

# tenant_region_allowed is region_allowed for the intent's tenant, for every residency and region
test_tenant_region_allowed_is_region_allowed if {
	tenants := testdata.tenants
	{t.data_residency | some t in tenants} == {"eu-only", "us-only", "any"}
	regions := {"eu-west-1", "eu-central-1", "us-east-1", "nowhere-1"}
	every t in tenants {
		workload := {"kind": "admit_workload", "admit_workload": {"namespace": t.namespaces[0], "name": "w"}}
		allowed := {r | some r in regions; lib.tenant_region_allowed(r)} with input as workload
			with data.gpupaas.fleet as testdata.fleet
			with data.gpupaas.tenants as tenants
		expected := {r | some r in regions; lib.region_allowed(t, r)} with data.gpupaas.fleet as testdata.fleet
		allowed == expected
	}
}

test_whole_gpu_resources_are_gpu_resources if {
	every r in lib.whole_gpu_resources {
		lib.is_gpu_resource(r)
		not lib.is_shared_gpu_resource(r)
	}
}

test_shared_gpu_resources_are_those_that_share_a_gpu if {
	every resources in [
		{"nvidia.com/gpu": 2, "amd.com/gpu": 1, "nvidia.com/gpu.shared": 1, "cpu": 4},
		{"nvidia.com/mig-1g.10gb": 1, "nvidia.com/gpu": 0},
		{"amd.com/gpu": 3},
		{},
	] {
		_shared_as_classified(resources)
	}
}

_shared_as_classified(resources) if {
	workload := {"kind": "admit_workload", "admit_workload": {"namespace": "acme-prod", "name": "w", "resources": resources}}
	shared := lib.shared_gpu_resources with input as workload
	gpu_resources := lib.gpu_resources with input as workload
	shared == {r | some r in gpu_resources; lib.is_shared_gpu_resource(r)}
}

# a node's own labels (hostname, zone, instance ids) are not read: node_labels drops them
test_node_labels_keeps_only_the_keys_the_policies_read if {
	node := {"name": "n1", "labels": {
		"kubernetes.io/hostname": "n1",
		"topology.kubernetes.io/zone": "eu-west-1a",
		"topology.kubernetes.io/region": "eu-west-1",
		"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
		"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM",
		"nvidia.com/mig.strategy": "none",
	}}
	labels := lib.node_labels(node) with data.gpupaas.fleet as testdata.fleet
	labels == {
		"topology.kubernetes.io/region": "eu-west-1",
		"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
		"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM",
		"nvidia.com/mig.strategy": "none",
	}
}

# the GPU classes' label keys come from the fleet data (or the bundle's index of it)
test_node_label_keys_follow_the_gpu_classes if {
	keys := lib.node_label_keys with data.gpupaas.fleet as testdata.fleet
	{"nvidia.com/gpu.product", "amd.com/gpu.product-name", "topology.kubernetes.io/region"} & keys == {"nvidia.com/gpu.product", "amd.com/gpu.product-name", "topology.kubernetes.io/region"}
	indexed := lib.node_label_keys with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.index.label_keys as ["example.com/accelerator"]
	"example.com/accelerator" in indexed
	not "nvidia.com/gpu.product" in indexed
}

# sorted_reasons sorts the reason objects themselves: the same order as by [code, message, policy]
test_sorted_reasons_orders_by_code_then_message_then_policy if {
	reasons := {
		{"code": "RESIDENCY_VIOLATION", "message": "b", "policy": "gpupaas.residency"},
		{"code": "RESIDENCY_VIOLATION", "message": "a", "policy": "gpupaas.residency"},
		{"code": "ISOLATION_VIOLATION", "message": "z", "policy": "gpupaas.isolation"},
		{"code": "QUOTA_EXCEEDED", "message": "a", "policy": "gpupaas.z"},
		{"code": "QUOTA_EXCEEDED", "message": "a", "policy": "gpupaas.admission"},
		{"code": "QUOTA_EXCEEDED", "message": "A longer message", "policy": "gpupaas.admission"},
	}
	by_triples := [{"code": r[0], "message": r[1], "policy": r[2]} |
		some r in sort([[x.code, x.message, x.policy] | some x in reasons])
	]
	lib.sorted_reasons(reasons) == by_triples
	[r.code | some r in lib.sorted_reasons(reasons)] == [
		"ISOLATION_VIOLATION", "QUOTA_EXCEEDED", "QUOTA_EXCEEDED", "QUOTA_EXCEEDED",
		"RESIDENCY_VIOLATION", "RESIDENCY_VIOLATION",
	]
	lib.sorted_reasons(set()) == []
}

test_subject_of_a_workload_whose_name_is_not_a_string if {
	lib.subject == `workload "acme-prod/5"` with input as {"kind": "admit_workload", "admit_workload": {"namespace": "acme-prod", "name": 5}}
	lib.subject == `workload "acme-prod/w"` with input as {"kind": "admit_workload", "admit_workload": {"namespace": "acme-prod", "name": "w"}}
	lib.subject == `deployment "d"` with input as {"kind": "deploy_model", "deploy_model": {"deployment": "d"}}
}

# subject's first branch (a workload read from the input) names every workload as the chain behind
# it does: with or without a deployment field, a name or namespace of another type, or none
test_subject_of_a_workload_is_the_chain_s if {
	workloads := [
		{"namespace": "acme-prod", "name": "w"},
		{"namespace": "acme-prod", "name": 5},
		{"namespace": 7, "name": "w"},
		{"namespace": "acme-prod", "name": "w", "deployment": "d"},
		{"namespace": "acme-prod", "name": "w", "deployment": false},
		{"name": "w"},
		{},
	]
	every kind in lib.workload_kinds {
		every w in workloads {
			[s | s := lib.subject] == [s | s := lib._subject] with input as {"kind": kind, kind: w}
		}
	}
	lib.subject == `deployment "d"` with input as {"kind": "admit_workload", "admit_workload": {"namespace": "n", "name": "w", "deployment": "d"}}
}

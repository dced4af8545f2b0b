package gpupaas.placement_test

import data.gpupaas.decision
import data.gpupaas.placement
import data.gpupaas.testdata

_samples := data.gpupaas.placement.samples

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

_h100 := "NVIDIA-H100-80GB-HBM3"

_a100 := "NVIDIA-A100-SXM4-40GB"

_deploy(tenant, payload) := {"kind": "deploy_model", "tenant": tenant, "deploy_model": object.union(
	{"deployment": "model", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 1},
	payload,
)}

_node(name, region, product, extra) := {
	"name": name,
	"labels": object.union({"topology.kubernetes.io/region": region, "nvidia.com/gpu.product": product}, extra),
}

test_dedicated_tenant_constraints if {
	result := decision.result with input as _deploy("acme-eu", {})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints == {
		"eligible_clusters": ["eu-west"],
		"node_selector": {"nvidia.com/gpu.product": _h100, "gpupaas.io/dedicated-tenant": "acme-eu"},
		"node_affinity": [{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]}],
		"tolerations": [{"key": "gpupaas.io/dedicated", "operator": "Equal", "value": "acme-eu", "effect": "NoSchedule"}],
		"priority_class_name": "gpupaas-enterprise",
		"isolation": {"mode": "dedicated", "gpu_sharing": false, "sharing_strategies": ["none"], "dedicated_pools": ["acme-h100-dedicated"]},
	}
}

test_shared_tenant_constraints if {
	result := decision.result with input as _deploy("globex", {})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints == {
		"eligible_clusters": ["eu-west", "us-east"],
		"node_selector": {"nvidia.com/gpu.product": _h100},
		"node_affinity": [{"key": "gpupaas.io/dedicated-tenant", "operator": "DoesNotExist"}],
		"priority_class_name": "gpupaas-standard",
		"isolation": {"mode": "shared", "gpu_sharing": true, "sharing_strategies": ["none"], "dedicated_pools": []},
	}
}

test_explicit_eligible_cluster if {
	result := decision.result with input as _deploy("globex", {"cluster": "us-east"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints.eligible_clusters == ["us-east"]
}

test_unknown_cluster if {
	result := decision.result with input as _deploy("globex", {"cluster": "ap-south"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "NO_ELIGIBLE_CLUSTER",
		"message": `cluster "ap-south" named by deployment "model" of tenant "globex" is not in the fleet`,
		"policy": "gpupaas.placement",
	}]
}

test_cluster_without_matching_pool if {
	result := decision.result with input as _deploy("acme-eu", {"cluster": "eu-central"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "NO_ELIGIBLE_CLUSTER",
		"message": `cluster "eu-central" has no dedicated pool of GPU class H100-80GB with sharing none for deployment "model" of tenant "acme-eu"`,
		"policy": "gpupaas.placement",
	}]
	result.constraints.eligible_clusters == []
}

test_no_eligible_cluster if {
	# initech-spot's A100 pools in the US all share their GPUs
	result := decision.result with input as _deploy("initech-spot", {"gpu_class": "A100-40GB"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "NO_ELIGIBLE_CLUSTER",
		"message": `no cluster in data_residency us-only has a shared pool of GPU class A100-40GB with sharing strategy [none] for deployment "model" of tenant "initech-spot"`,
		"policy": "gpupaas.placement",
	}]
}

test_no_eligible_cluster_on_scale if {
	tenants := object.union(testdata.tenants, {"initech-spot": {"allow_gpu_sharing": false}})
	result := decision.result with input as {"kind": "scale", "tenant": "initech-spot", "scale": {"deployment": "m", "gpu_class": "A100-40GB", "gpus_per_replica": 1, "current_replicas": 1, "target_replicas": 2}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as tenants
	testdata.codes(result) == ["NO_ELIGIBLE_CLUSTER"]
}

test_admission_constraints_without_pinned_class if {
	result := decision.result with input as {"kind": "admit_workload", "admit_workload": {"namespace": "globex-ml", "name": "w", "resources": {"nvidia.com/gpu": 1}}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	not result.constraints.node_selector
	result.constraints.eligible_clusters == ["eu-west", "us-east"]
	result.constraints.isolation.sharing_strategies == ["mig", "none", "time-slicing"]
}

# ---- place_workload ----

_acme_workload := {
	"namespace": "acme-prod", "name": "llama-0",
	"resources": {"nvidia.com/gpu": 2},
	"node_selector": {"nvidia.com/gpu.product": _h100},
	"tolerations": [{"key": "gpupaas.io/dedicated", "operator": "Equal", "value": "acme-eu", "effect": "NoSchedule"}],
}

_acme_node := _node("acme-1", "eu-west-1", _h100, {"gpupaas.io/dedicated-tenant": "acme-eu"})

test_place_on_own_dedicated_node if {
	nodes := [_acme_node, _node("acme-a100", "eu-west-1", _a100, {"gpupaas.io/dedicated-tenant": "acme-eu"})]
	result := decision.result with input as {"kind": "place_workload", "place_workload": object.union(_acme_workload, {"nodes": nodes})}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints.eligible_nodes == ["acme-1"]
	result.constraints.rejected_nodes == [{"node": "acme-a100", "reasons": [{
		"code": "NODE_GPU_CLASS_MISMATCH",
		"message": `node "acme-a100" carries GPU class [A100-40GB], not H100-80GB pinned by workload "acme-prod/llama-0"`,
		"policy": "gpupaas.placement",
	}]}]
}

test_place_reports_the_node_label_keys_it_reads if {
	node := object.union(_acme_node, {"labels": {"kubernetes.io/hostname": "acme-1"}})
	result := decision.result with input as {"kind": "place_workload", "place_workload": object.union(_acme_workload, {"nodes": [node]})}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.constraints.eligible_nodes == ["acme-1"]
	result.constraints.node_label_keys == [
		"amd.com/gpu.product-name",
		"gpupaas.io/dedicated-tenant",
		"nvidia.com/gpu.product",
		"nvidia.com/gpu.replicas",
		"nvidia.com/gpu.sharing-strategy",
		"nvidia.com/mig.strategy",
		"topology.kubernetes.io/region",
	]
}

test_unpinned_workload_on_node_of_other_vendor if {
	nodes := [
		{"name": "amd-1", "labels": {"topology.kubernetes.io/region": "eu-central-1", "amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"}},
		{"name": "bare-1", "labels": {"topology.kubernetes.io/region": "eu-central-1"}},
		_node("a100-1", "us-east-1", _a100, {}),
	]
	rejections := placement.node_rejections with input as {"kind": "place_workload", "place_workload": {"namespace": "globex-ml", "name": "w", "resources": {"nvidia.com/gpu": 1}, "nodes": nodes}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	object.keys(rejections) == {"amd-1", "bare-1"}
	[r.message | some r in rejections["amd-1"]] == [`node "amd-1" carries GPU class [MI300X], none of the entitled classes [A100-40GB, H100-80GB] of tenant "globex" for workload "globex-ml/w"`]
}

test_cpu_workload_accepts_any_class if {
	nodes := [{"name": "amd-1", "labels": {"amd.com/gpu.product-name": "AMD_Instinct_MI300X_OAM"}}]
	result := decision.result with input as {"kind": "place_workload", "place_workload": {"namespace": "globex-ml", "name": "w", "nodes": nodes}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints.eligible_nodes == ["amd-1"]
	result.constraints.rejected_nodes == []
}

test_no_eligible_node if {
	nodes := [_node("us-1", "us-east-1", _h100, {}), _node("eu-shared-1", "eu-west-1", _h100, {})]
	result := decision.result with input as {"kind": "place_workload", "place_workload": object.union(_acme_workload, {"nodes": nodes})}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "NO_ELIGIBLE_NODE",
		"message": `all 2 candidate nodes were rejected for workload "acme-prod/llama-0" of tenant "acme-eu"`,
		"policy": "gpupaas.placement",
	}]
	result.constraints.eligible_nodes == []
	[[n.node, [r.code | some r in n.reasons]] | some n in result.constraints.rejected_nodes] == [
		["eu-shared-1", ["ISOLATION_SHARED_POOL"]],
		["us-1", ["ISOLATION_SHARED_POOL", "RESIDENCY_VIOLATION"]],
	]
}

test_no_candidate_nodes if {
	result := decision.result with input as {"kind": "place_workload", "place_workload": object.union(_acme_workload, {"nodes": []})}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints.eligible_nodes == []
}

test_place_checks_admission if {
	workload := object.union(_acme_workload, {"nodes": [_acme_node], "priority_class_name": "gpupaas-premium"})
	result := decision.result with input as {"kind": "place_workload", "place_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["PRIORITY_CLASS_UNKNOWN"]
	result.constraints.eligible_nodes == ["acme-1"]
}

# ---- place_workload: the entitlement of the node's class ----

_globex_place(resources, nodes, held) := {"kind": "place_workload", "place_workload": {
	"namespace": "globex-ml", "name": "w", "resources": resources, "nodes": nodes, "held": held,
}}

_over_class(input_doc) := _over_class_of(input_doc, testdata.tenants)

_over_class_of(input_doc, tenants) := {name |
	some name, reasons in placement.node_rejections with input as input_doc
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as tenants
	some r in reasons
	r.code == "ENTITLEMENT_EXCEEDED"
}

test_a_pod_naming_no_class_is_held_to_each_nodes_class if {
	nodes := [_node("a100-1", "us-east-1", _a100, {}), _node("h100-1", "us-east-1", _h100, {})]
	doc := _globex_place({"nvidia.com/gpu": 5}, nodes, [])
	_over_class(doc) == {"a100-1"} # globex: A100-40GB 4, H100-80GB 8
	rejections := placement.node_rejections with input as doc
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in rejections["a100-1"]] == [`node "a100-1" has GPU class A100-40GB: tenant "globex" holds 0 and workload "globex-ml/w" asks for 5, above the entitlement of 4`]
}

test_what_the_tenant_holds_of_a_class_counts_against_it if {
	a100 := _node("a100-1", "us-east-1", _a100, {})
	h100 := _node("h100-1", "us-east-1", _h100, {})
	held := [{"resources": {"nvidia.com/gpu": 3}, "on": [a100.labels]}]
	_over_class(_globex_place({"nvidia.com/gpu": 2}, [a100, h100], held)) == {"a100-1"}
	_over_class(_globex_place({"nvidia.com/gpu": 1}, [a100, h100], held)) == set()
}

test_a_pod_allowed_on_several_classes_counts_once_for_each if {
	a100 := _node("a100-1", "us-east-1", _a100, {})
	h100 := _node("h100-1", "us-east-1", _h100, {})
	h100_eu := _node("h100-eu", "eu-west-1", _h100, {})

	# not yet seen bound: on an A100 or on either H100; each class counts it once
	held := [{"resources": {"nvidia.com/gpu": 4}, "on": [a100.labels, h100.labels, h100_eu.labels]}]
	_over_class(_globex_place({"nvidia.com/gpu": 4}, [a100, h100], held)) == {"a100-1"}
	_over_class(_globex_place({"nvidia.com/gpu": 5}, [a100, h100], held)) == {"a100-1", "h100-1"}
}

test_shares_count_as_the_part_of_a_gpu_the_node_gives if {
	shared := _node("a100-ts", "us-east-1", concat("", [_a100, "-SHARED"]), {
		"nvidia.com/gpu.sharing-strategy": "time-slicing",
		"nvidia.com/gpu.replicas": "4",
	})
	held := [{"resources": {"nvidia.com/gpu.shared": 14}, "on": [shared.labels]}] # 3.5 of 4 A100s
	_over_class(_globex_place({"nvidia.com/gpu.shared": 2}, [shared], held)) == set()
	_over_class(_globex_place({"nvidia.com/gpu.shared": 3}, [shared], held)) == {"a100-ts"}

	# without GPU feature discovery's replicas label a share counts as a whole GPU
	unlabelled := json.remove(shared, ["labels/nvidia.com~1gpu.replicas"])
	_over_class(_globex_place({"nvidia.com/gpu.shared": 1}, [unlabelled], held)) == {"a100-ts"}
}

test_a_spot_tenant_allowing_preemption_borrows_beyond_its_entitlement if {
	a100 := _node("a100-1", "us-east-1", _a100, {})
	place := {"kind": "place_workload", "place_workload": {
		"namespace": "initech-batch", "name": "w", "resources": {"nvidia.com/gpu": 4}, "nodes": [a100],
		"held": [{"resources": {"nvidia.com/gpu": 14}, "on": [a100.labels]}], # entitled to 16
	}}
	_over_class(place) == set()

	# the same tenant refusing preemption is held to its entitlement
	refusing := json.patch(testdata.tenants, [{"op": "replace", "path": "/initech-spot/allow_preemption", "value": false}])
	_over_class_of(place, refusing) == {"a100-1"}
}

test_without_held_the_intents_usage_counts if {
	a100 := _node("a100-1", "us-east-1", _a100, {})
	doc := {"kind": "place_workload", "usage": {"A100-40GB": 3}, "place_workload": {
		"namespace": "globex-ml", "name": "w", "resources": {"nvidia.com/gpu": 2}, "nodes": [a100],
	}}
	_over_class(doc) == {"a100-1"}
}

package gpupaas.residency_test

import data.gpupaas.decision
import data.gpupaas.residency
import data.gpupaas.testdata

_h100 := "NVIDIA-H100-80GB-HBM3"

_acme_workload := {
	"namespace": "acme-prod",
	"name": "llama-0",
	"resources": {"nvidia.com/gpu": 1},
	"node_selector": {"nvidia.com/gpu.product": _h100},
	"tolerations": [{"key": "gpupaas.io/dedicated", "operator": "Equal", "value": "acme-eu", "effect": "NoSchedule"}],
	"priority_class_name": "gpupaas-enterprise",
}

_samples := data.gpupaas.residency.samples

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

test_deploy_on_us_cluster_denied if {
	result := decision.result with input as {
		"kind": "deploy_model", "tenant": "acme-eu",
		"deploy_model": {"deployment": "llama-70b", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 1, "cluster": "us-east"},
	}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	result.reasons == [{
		"code": "RESIDENCY_VIOLATION",
		"message": `tenant "acme-eu" (data_residency eu-only) may not deploy "llama-70b" on cluster "us-east" in jurisdiction US`,
		"policy": "gpupaas.residency",
	}]
}

test_deploy_on_eu_cluster_allowed if {
	result := decision.result with input as {
		"kind": "deploy_model", "tenant": "acme-eu",
		"deploy_model": {"deployment": "llama-70b", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 1, "cluster": "eu-west"},
	}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints.eligible_clusters == ["eu-west"]
	result.constraints.node_affinity == [{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]}]
}

test_any_residency_deploys_anywhere if {
	result := decision.result with input as {
		"kind": "deploy_model", "tenant": "globex",
		"deploy_model": {"deployment": "llama-8b", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 1, "cluster": "us-east"},
	}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints.eligible_clusters == ["us-east"]
	result.constraints.node_affinity == [{"key": "gpupaas.io/dedicated-tenant", "operator": "DoesNotExist"}]
}

test_region_selector_outside_jurisdiction if {
	workload := object.union(_acme_workload, {"node_selector": {"topology.kubernetes.io/region": "us-east-1"}})
	reasons := residency.deny with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	reasons == {{
		"code": "RESIDENCY_VIOLATION",
		"message": `workload "acme-prod/llama-0" of tenant "acme-eu" (data_residency eu-only) selects region us-east-1 in jurisdiction US`,
		"policy": "gpupaas.residency",
	}}
}

test_region_selector_unknown_region if {
	workload := object.union(_acme_workload, {"node_selector": {"topology.kubernetes.io/region": "mars-1"}})
	result := decision.result with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["RESIDENCY_VIOLATION"]
	contains(result.reasons[0].message, "mars-1 in jurisdiction unknown")
}

test_region_affinity_outside_jurisdiction if {
	workload := object.union(_acme_workload, {"node_affinity": [
		[{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]}],
		[{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["us-east-1", "eu-central-1"]}],
	]})
	reasons := residency.deny with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in reasons] == [`workload "acme-prod/llama-0" of tenant "acme-eu" (data_residency eu-only) has a node affinity on regions [us-east-1] outside its jurisdiction`]
}

test_region_affinity_inside_jurisdiction if {
	workload := object.union(_acme_workload, {"node_affinity": [
		[{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1", "eu-central-1"]}],
		[{"key": "topology.kubernetes.io/region", "operator": "NotIn", "values": ["us-east-1"]}],
	]})
	result := decision.result with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.warnings == []
}

test_warn_workload_without_region if {
	result := decision.result with input as {"kind": "admit_workload", "admit_workload": _acme_workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	[w.code | some w in result.warnings] == ["RESIDENCY_UNCONSTRAINED"]
	result.constraints.node_affinity == [{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]}]
}

test_no_warning_for_any_residency if {
	warnings := residency.warn with input as {"kind": "admit_workload", "admit_workload": {"namespace": "globex-ml", "name": "w", "resources": {"nvidia.com/gpu": 1}}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	warnings == set()
}

test_node_rejections if {
	nodes := [
		{"name": "eu", "labels": {"topology.kubernetes.io/region": "eu-west-1"}},
		{"name": "us", "labels": {"topology.kubernetes.io/region": "us-east-1"}},
		{"name": "bare", "labels": {}},
		{"name": "nolabels"},
	]
	rejections := residency.node_rejections with input as {"kind": "place_workload", "place_workload": object.union(_acme_workload, {"nodes": nodes})}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	{name: [r.code | some r in reasons] | some name, reasons in rejections} == {
		"us": ["RESIDENCY_VIOLATION"],
		"bare": ["RESIDENCY_VIOLATION"],
		"nolabels": ["RESIDENCY_VIOLATION"],
	}
	[r.message | some r in rejections.us] == [`node "us" is in region us-east-1 (jurisdiction US), outside data_residency eu-only of tenant "acme-eu"`]
	[r.message | some r in rejections.bare] == [`node "bare" has no topology.kubernetes.io/region label, so it cannot satisfy data_residency eu-only of tenant "acme-eu"`]
}

test_any_residency_accepts_every_node if {
	nodes := [{"name": "us", "labels": {"topology.kubernetes.io/region": "us-east-1"}}, {"name": "bare"}]
	rejections := residency.node_rejections with input as {"kind": "place_workload", "place_workload": {"namespace": "globex-ml", "name": "w", "nodes": nodes}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	rejections == {}
}

test_any_residency_accepts_regions_outside_the_fleet if {
	workload := {"namespace": "globex-ml", "name": "w", "node_selector": {"topology.kubernetes.io/region": "ap-south-1"}}
	reasons := residency.deny with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	reasons == set()
}

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

# a region value that is not a string (an input the PDP's schema would refuse, sent to OPA
# directly) still denies: the message names it rather than going undefined with the reason
test_region_affinity_with_a_number_denies if {
	workload := object.union(_acme_workload, {"node_affinity": [[{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1", 5]}]]})
	result := decision.result with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	[r.message | some r in result.reasons] == [`workload "acme-prod/llama-0" of tenant "acme-eu" (data_residency eu-only) has a node affinity on regions [5] outside its jurisdiction`]
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

	# NotIn excludes every region of the fleet outside the jurisdiction, but it also matches nodes
	# without a region label and regions the fleet does not have yet: allowed, not pinned.
	[w.code | some w in result.warnings] == ["RESIDENCY_UNCONSTRAINED"]
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

# ---- nodes a workload names, judged from the fleet data without a view of the cluster ----

_initech := {"namespace": "initech-batch", "name": "job-1", "resources": {"nvidia.com/gpu": 1}}

test_named_node_outside_jurisdiction_by_the_fleet_data if {
	reasons := residency.deny with input as {"kind": "admit_workload", "admit_workload": object.union(_initech, {"node_name": "eu-shared-1"})}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in reasons] == [`workload "initech-batch/job-1" of tenant "initech-spot" (data_residency us-only) names node "eu-shared-1" (spec.nodeName), which by the fleet data (pool eu-h100-shared of cluster eu-west) is in region eu-west-1 (jurisdiction EU)`]
}

test_named_node_inside_jurisdiction if {
	result := decision.result with input as {"kind": "admit_workload", "admit_workload": object.union(_initech, {"node_name": "us-spot-2"})}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.warnings == []
}

test_nodes_named_by_hostname_and_match_fields if {
	workload := object.union(_initech, {
		"node_selector": {"kubernetes.io/hostname": "us-spot-1"},
		"node_affinity": [
			[{"key": "kubernetes.io/hostname", "operator": "In", "values": ["us-spot-1", "eu-mi300x-2"]}],
			[{"key": "metadata.name", "operator": "In", "values": ["eu-a100-ts-1"]}],
			[{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["eu-shared-2"]}],
		],
	})
	reasons := residency.deny with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	count(reasons) == 2
	every named in [`names node "eu-mi300x-2" (node affinity term 0)`, `names node "eu-a100-ts-1" (node affinity term 1)`] {
		some r in reasons
		contains(r.message, named)
	}
}

test_named_node_unknown_to_the_fleet_data if {
	reasons := residency.deny with input as {"kind": "admit_workload", "admit_workload": object.union(_initech, {"node_selector": {"kubernetes.io/hostname": "ghost-1"}})}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in reasons] == [`workload "initech-batch/job-1" of tenant "initech-spot" (data_residency us-only) names node "ghost-1" (node selector kubernetes.io/hostname), which the fleet data does not list, so its region cannot be checked`]

	# a tenant of residency any may name any node
	allowed := residency.deny with input as {"kind": "admit_workload", "admit_workload": {"namespace": "globex-ml", "name": "w", "node_name": "ghost-1"}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	allowed == set()
}

test_named_node_judged_by_its_labels_when_the_caller_sends_them if {
	intent := {"kind": "place_workload", "place_workload": object.union(_initech, {
		"node_name": "ghost-1",
		"nodes": [{"name": "ghost-1", "labels": {"topology.kubernetes.io/region": "eu-central-1"}}],
	})}
	reasons := residency.deny with input as intent
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in reasons] == [`workload "initech-batch/job-1" of tenant "initech-spot" (data_residency us-only) names node "ghost-1" (spec.nodeName), which by its labels is in region eu-central-1 (jurisdiction EU)`]

	unlabelled := residency.deny with input as json.patch(intent, [{"op": "replace", "path": "/place_workload/nodes/0/labels", "value": {}}])
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in unlabelled] == [`workload "initech-batch/job-1" of tenant "initech-spot" (data_residency us-only) names node "ghost-1" (spec.nodeName), which by its labels is without a topology.kubernetes.io/region label`]
}

test_named_node_index_is_computed_without_the_bundles_index if {
	reasons := residency.deny with input as {"kind": "admit_workload", "admit_workload": object.union(_initech, {"node_name": "eu-shared-1"})}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
		with data.gpupaas.index as {"nodes": {"eu-shared-1": ["us-east", "us-h100-shared"]}}
	reasons == set()
}

# ---- node affinity that bounds the region by exclusion ----

_notin(values) := [[{"key": "topology.kubernetes.io/region", "operator": "NotIn", "values": values}]]

test_not_in_that_admits_regions_outside_the_jurisdiction_is_denied if {
	workload := object.union(_acme_workload, {"node_affinity": _notin(["eu-west-1"])})
	result := decision.result with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	[r.message | some r in result.reasons] == [`node affinity term 0 of workload "acme-prod/llama-0" of tenant "acme-eu" (data_residency eu-only) excludes regions [eu-west-1] only, so it admits regions [us-east-1] outside its jurisdiction; select regions [eu-central-1, eu-west-1] with In`]
}

test_exists_on_the_region_admits_every_region if {
	workload := object.union(_acme_workload, {"node_affinity": [[{"key": "topology.kubernetes.io/region", "operator": "Exists"}]]})
	result := decision.result with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["RESIDENCY_VIOLATION"]
	contains(result.reasons[0].message, "excludes regions [] only, so it admits regions [us-east-1]")
}

test_does_not_exist_on_the_region_is_denied if {
	workload := object.union(_acme_workload, {"node_affinity": [[{"key": "topology.kubernetes.io/region", "operator": "DoesNotExist"}]]})
	messages := [r.message | some r in residency.deny] with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	messages == [`node affinity term 0 of workload "acme-prod/llama-0" of tenant "acme-eu" asks for nodes without a topology.kubernetes.io/region label, which cannot satisfy data_residency eu-only`]
}

test_not_in_beside_a_region_or_node_selector_is_judged_by_the_selector if {
	by_region := object.union(_acme_workload, {
		"node_affinity": _notin(["eu-central-1"]),
		"node_selector": {"topology.kubernetes.io/region": "eu-west-1"},
	})
	region := decision.result with input as {"kind": "admit_workload", "admit_workload": by_region}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	region.outcome == "ALLOW"
	region.warnings == []
	by_node := object.union(_acme_workload, {"node_affinity": _notin(["eu-central-1"]), "node_name": "eu-acme-1"})
	node := decision.result with input as {"kind": "admit_workload", "admit_workload": by_node}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	node.outcome == "ALLOW"
}

test_every_term_must_pin_the_region_or_the_workload_is_unpinned if {
	workload := object.union(_acme_workload, {"node_affinity": [
		[{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]}],
		[{"key": "nvidia.com/gpu.product", "operator": "In", "values": [_h100]}],
	]})
	result := decision.result with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	[w.code | some w in result.warnings] == ["RESIDENCY_UNCONSTRAINED"]
}

# ---- device claims (Dynamic Resource Allocation): no extender, so the region must be pinned ----

test_device_claims_without_a_region_are_denied if {
	workload := {"namespace": "initech-batch", "name": "job-1", "resource_claims": ["gpu", "nic"]}
	result := decision.result with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "RESIDENCY_UNCONSTRAINED",
		"message": `workload "initech-batch/job-1" of tenant "initech-spot" (data_residency us-only) claims devices through resourceClaims [gpu, nic], which the scheduler extender does not judge, and does not pin its region; select regions [us-east-1] with a node selector or node affinity In`,
		"policy": "gpupaas.residency",
	}]
	result.warnings == []
}

test_device_claims_with_a_pinned_region_are_allowed if {
	workload := {
		"namespace": "initech-batch", "name": "job-1", "resource_claims": ["gpu"],
		"node_affinity": [[{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["us-east-1"]}]],
	}
	result := decision.result with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
}

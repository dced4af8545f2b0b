package gpupaas.sharing_test

import data.gpupaas.decision
import data.gpupaas.sharing
import data.gpupaas.testdata

_samples := data.gpupaas.sharing.samples

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

_request(tenant, request) := {"kind": "request_gpu_sharing", "tenant": tenant, "request_gpu_sharing": request}

test_request_sharing_forbidden if {
	result := decision.result with input as _request("acme-eu", {"mode": "time-slicing"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "DENY"
	result.reasons == [{
		"code": "SHARING_NOT_ALLOWED",
		"message": `tenant "acme-eu" sets allow_gpu_sharing false; the request_gpu_sharing intent asks for sharing mode time-slicing`,
		"policy": "gpupaas.sharing",
	}]
}

test_request_sharing_mode_unavailable if {
	result := decision.result with input as _request("globex", {"mode": "mps"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.reasons == [{
		"code": "SHARING_MODE_UNAVAILABLE",
		"message": `no shared pool of GPU class [A100-40GB, H100-80GB] in data_residency any of tenant "globex" offers sharing mode mps`,
		"policy": "gpupaas.sharing",
	}]
}

test_request_sharing_for_a_class_without_the_mode if {
	result := decision.result with input as _request("globex", {"mode": "time-slicing", "gpu_class": "H100-80GB"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["SHARING_MODE_UNAVAILABLE"]
}

test_request_sharing_allowed if {
	result := decision.result with input as _request("globex", {"mode": "mig"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints.eligible_clusters == ["us-east"]
}

test_request_sharing_within_residency if {
	result := decision.result with input as _request("initech-spot", {"mode": "time-slicing", "gpu_class": "A100-40GB"})
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints.eligible_clusters == ["us-east"]
}

test_deploy_with_time_slicing if {
	result := decision.result with input as {"kind": "deploy_model", "tenant": "globex", "deploy_model": {"deployment": "llama-8b", "gpu_class": "A100-40GB", "gpus_per_replica": 1, "replicas": 2, "sharing": "time-slicing"}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
	result.constraints.eligible_clusters == ["eu-west", "us-east"]
	result.constraints.isolation.sharing_strategies == ["mig", "time-slicing"]
}

test_deploy_with_sharing_forbidden if {
	result := decision.result with input as {"kind": "deploy_model", "tenant": "acme-eu", "deploy_model": {"deployment": "llama", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 1, "sharing": "mig"}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["SHARING_NOT_ALLOWED"]
}

test_deploy_with_mode_unavailable_on_named_cluster if {
	result := decision.result with input as {"kind": "deploy_model", "tenant": "globex", "deploy_model": {"deployment": "llama", "gpu_class": "H100-80GB", "gpus_per_replica": 1, "replicas": 1, "sharing": "mps", "cluster": "eu-west"}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.codes(result) == ["SHARING_MODE_UNAVAILABLE"]
}

test_shared_resources_forbidden if {
	reasons := sharing.deny with input as {"kind": "admit_workload", "admit_workload": {
		"namespace": "acme-prod", "name": "w",
		"resources": {"nvidia.com/mig-1g.10gb": 1, "nvidia.com/gpu.shared": 2, "nvidia.com/gpu": 0},
	}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	[r.message | some r in reasons] == [`tenant "acme-eu" sets allow_gpu_sharing false; workload "acme-prod/w" asks for shared GPU resources [nvidia.com/gpu.shared, nvidia.com/mig-1g.10gb]`]
}

test_shared_resources_allowed if {
	result := decision.result with input as {"kind": "admit_workload", "admit_workload": {"namespace": "globex-ml", "name": "w", "resources": {"nvidia.com/mig-1g.5gb": 1}}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	result.outcome == "ALLOW"
}

test_shared_nodes_rejected if {
	nodes := [
		{"name": "ts", "labels": {"nvidia.com/gpu.sharing-strategy": "time-slicing"}},
		{"name": "mps", "labels": {"nvidia.com/gpu.sharing-strategy": "mps"}},
		{"name": "mig", "labels": {"nvidia.com/mig.strategy": "mixed"}},
		{"name": "suffix", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-SHARED"}},
		{"name": "plain", "labels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "nvidia.com/gpu.sharing-strategy": "none", "nvidia.com/mig.strategy": "none"}},
	]
	rejections := sharing.node_rejections with input as {"kind": "place_workload", "place_workload": {"namespace": "acme-prod", "name": "w", "nodes": nodes}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	{name: [r.message | some r in reasons] | some name, reasons in rejections} == {
		"ts": [`node "ts" shares its GPUs (time-slicing) and tenant "acme-eu" sets allow_gpu_sharing false`],
		"mps": [`node "mps" shares its GPUs (mps) and tenant "acme-eu" sets allow_gpu_sharing false`],
		"mig": [`node "mig" shares its GPUs (mig) and tenant "acme-eu" sets allow_gpu_sharing false`],
		"suffix": [`node "suffix" shares its GPUs (shared product) and tenant "acme-eu" sets allow_gpu_sharing false`],
	}
}

test_shared_nodes_accepted_when_sharing_allowed if {
	nodes := [{"name": "ts", "labels": {"nvidia.com/gpu.sharing-strategy": "time-slicing"}}]
	rejections := sharing.node_rejections with input as {"kind": "place_workload", "place_workload": {"namespace": "globex-ml", "name": "w", "nodes": nodes}}
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	rejections == {}
}

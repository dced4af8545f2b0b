# METADATA
# title: Test fixtures
# description: >-
#   The example fleet and tenants (examples/fleet.yaml, examples/tenants/*.yaml) as test data,
#   and helpers to check decisions. Test-only. Tests evaluate the decision with
#   `with data.gpupaas.fleet as testdata.fleet with data.gpupaas.tenants as testdata.tenants`
#   written out in the test: a function using `with` does not compile to WebAssembly.
package gpupaas.testdata

fleet := {
	"name": "example-fleet",
	"gpu_classes": {
		"H100-80GB": {
			"vendor": "nvidia",
			"resource": "nvidia.com/gpu",
			"node_label": {
				"key": "nvidia.com/gpu.product",
				"value": "NVIDIA-H100-80GB-HBM3",
			},
			"memory_gib": 80,
			"mig_resources": [
				"nvidia.com/mig-1g.10gb",
				"nvidia.com/mig-3g.40gb",
			],
		},
		"A100-40GB": {
			"vendor": "nvidia",
			"resource": "nvidia.com/gpu",
			"node_label": {
				"key": "nvidia.com/gpu.product",
				"value": "NVIDIA-A100-SXM4-40GB",
			},
			"memory_gib": 40,
			"mig_resources": [
				"nvidia.com/mig-1g.5gb",
				"nvidia.com/mig-2g.10gb",
			],
		},
		"MI300X": {
			"vendor": "amd",
			"resource": "amd.com/gpu",
			"node_label": {
				"key": "amd.com/gpu.product-name",
				"value": "AMD_Instinct_MI300X_OAM",
			},
			"memory_gib": 192,
		},
	},
	"clusters": {
		"eu-west": {
			"region": "eu-west-1",
			"jurisdiction": "EU",
			"compliance": [
				"gdpr",
				"iso27001",
			],
			"pools": {
				"acme-h100-dedicated": {
					"gpu_class": "H100-80GB",
					"isolation": "dedicated",
					"tenant": "acme-eu",
					"sharing_strategy": "none",
					"nodes": 2,
					"node_names": ["eu-acme-1", "eu-acme-2"],
					"gpus_per_node": 8,
				},
				"eu-h100-shared": {
					"gpu_class": "H100-80GB",
					"isolation": "shared",
					"sharing_strategy": "none",
					"nodes": 4,
					"node_names": ["eu-shared-1", "eu-shared-2", "eu-shared-3", "eu-shared-4"],
					"gpus_per_node": 8,
				},
				"eu-a100-timeslice": {
					"gpu_class": "A100-40GB",
					"isolation": "shared",
					"sharing_strategy": "time-slicing",
					"nodes": 2,
					"node_names": ["eu-a100-ts-1", "eu-a100-ts-2"],
					"gpus_per_node": 8,
				},
			},
		},
		"eu-central": {
			"region": "eu-central-1",
			"jurisdiction": "EU",
			"compliance": [
				"gdpr",
			],
			"pools": {
				"eu-mi300x-shared": {
					"gpu_class": "MI300X",
					"isolation": "shared",
					"sharing_strategy": "none",
					"nodes": 2,
					"node_names": ["eu-mi300x-1", "eu-mi300x-2"],
					"gpus_per_node": 8,
				},
			},
		},
		"us-east": {
			"region": "us-east-1",
			"jurisdiction": "US",
			"compliance": [
				"soc2",
			],
			"pools": {
				"us-h100-shared": {
					"gpu_class": "H100-80GB",
					"isolation": "shared",
					"sharing_strategy": "none",
					"nodes": 8,
					"node_names": ["us-shared-1", "us-shared-2", "us-shared-3", "us-shared-4", "us-shared-5", "us-shared-6", "us-shared-7", "us-shared-8"],
					"gpus_per_node": 8,
				},
				"us-a100-mig": {
					"gpu_class": "A100-40GB",
					"isolation": "shared",
					"sharing_strategy": "mig",
					"nodes": 2,
					"node_names": ["us-a100-mig-1", "us-a100-mig-2"],
					"gpus_per_node": 8,
				},
				"us-a100-spot": {
					"gpu_class": "A100-40GB",
					"isolation": "shared",
					"sharing_strategy": "time-slicing",
					"nodes": 4,
					"node_names": ["us-spot-1", "us-spot-2", "us-spot-3", "us-spot-4"],
					"gpus_per_node": 8,
				},
			},
		},
	},
}

tenants := {
	"acme-eu": {
		"name": "acme-eu",
		"display_name": "ACME Bank (EU)",
		"tier": "enterprise",
		"isolation": "dedicated",
		"data_residency": "eu-only",
		"allow_preemption": false,
		"allow_gpu_sharing": false,
		"namespaces": [
			"acme-prod",
			"acme-staging",
		],
		"entitlements": {
			"H100-80GB": 4,
		},
		"sla": {
			"class": "latency-critical",
			"latency_p99_ms": 250,
			"availability": 99.95,
			"max_batch_size": 32,
		},
	},
	"globex": {
		"name": "globex",
		"display_name": "Globex Research",
		"tier": "standard",
		"isolation": "shared",
		"data_residency": "any",
		"allow_preemption": false,
		"allow_gpu_sharing": true,
		"namespaces": [
			"globex-ml",
		],
		"entitlements": {
			"H100-80GB": 8,
			"A100-40GB": 4,
		},
		"sla": {
			"class": "throughput",
			"availability": 99.5,
		},
	},
	"initech-spot": {
		"name": "initech-spot",
		"display_name": "Initech Batch",
		"tier": "spot",
		"isolation": "shared",
		"data_residency": "us-only",
		"allow_preemption": true,
		"allow_gpu_sharing": true,
		"namespaces": [
			"initech-batch",
		],
		"entitlements": {
			"A100-40GB": 16,
		},
		"sla": {
			"class": "best-effort",
		},
	},
}

# codes is the sorted set of reason codes of a decision
codes(result) := sort({r.code | some r in result.reasons})

# matches holds when a decision has the outcome and reason codes a sample expects
matches(result, expect) if {
	result.outcome == expect.outcome
	codes(result) == expect.codes
}

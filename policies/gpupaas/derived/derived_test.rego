package gpupaas.derived_test

import data.gpupaas.decision
import data.gpupaas.derived
import data.gpupaas.testdata

_tables := tables if {
	tables := derived.tables with data.gpupaas.fleet as testdata.fleet with data.gpupaas.tenants as testdata.tenants
}

_admit(selector) := {"kind": "admit_workload", "admit_workload": object.union(
	{"namespace": "acme-prod", "name": "w", "resources": {"nvidia.com/gpu": 1}},
	selector,
)}

_deploy(tenant, class, sharing, cluster) := {
	"kind": "deploy_model", "tenant": tenant, "usage": {},
	"deploy_model": object.union(
		{"deployment": "d", "gpu_class": class, "gpus_per_replica": 1, "replicas": 1, "sharing": sharing},
		cluster,
	),
}

# the decision with the tables the build stores, and without them
_with_tables(intent) := result if {
	tables := _tables
	result := decision.result with input as intent
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
		with data.gpupaas.index as tables
}

_computed(intent) := result if {
	result := decision.result with input as intent
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
}

test_tables_name_each_distinct_constraints_document_once if {
	count(_tables.constraint_sets) == count({c | some c in _tables.constraint_sets})

	# acme-eu: the H100 class it is entitled to, and no pin
	object.keys(_tables.workload_constraints["acme-eu"]) == {"*", "H100-80GB"}

	# globex may share its GPUs: every mode, for each entitled class
	object.keys(_tables.deploy_constraints.globex["A100-40GB"]) == {"none", "time-slicing", "mps", "mig"}
	object.keys(_tables.deploy_constraints["acme-eu"]["H100-80GB"]) == {"none"}
}

test_an_admission_reads_its_constraints_from_the_table if {
	intent := _admit({"node_selector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}})
	i := _tables.workload_constraints["acme-eu"]["H100-80GB"]
	got := _with_tables(intent)
	got.constraints == _tables.constraint_sets[i]
	got == _computed(intent)
	got.constraints.node_selector["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
}

test_decisions_are_the_same_with_and_without_the_tables if {
	intents := [
		_admit({}),
		_admit({"node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}}), # not entitled: computed
		_admit({"node_selector": {"nvidia.com/gpu.product": "unknown"}}),
		_admit({"namespace": "globex-ml"}),
		_admit({"namespace": "stray"}),
		_admit({"cluster": "us-east"}), # no field of a workload; computed
		_deploy("acme-eu", "H100-80GB", "none", {}),
		_deploy("acme-eu", "H100-80GB", "none", {"cluster": "eu-west"}), # names a cluster: the table, narrowed
		_deploy("globex", "A100-40GB", "mig", {}),
		_deploy("globex", "A100-40GB", "mps", {}),
		_deploy("initech-spot", "A100-40GB", "none", {}),
		_deploy("nobody", "H100-80GB", "none", {}),
	]
	every intent in intents {
		_with_tables(intent) == _computed(intent)
	}
}

# a deployment naming a cluster reads its tenant's table narrowed to that cluster: the same
# decision as computed for every tenant, class, sharing mode and cluster (eligible, of another
# jurisdiction, without a pool of the class, unknown)
test_a_deployment_naming_a_cluster_decides_as_computed if {
	_named_cluster_decisions_agree(testdata.tenants)

	# acme-eu with residency "any": a dedicated tenant whose constraints have no node affinity
	_named_cluster_decisions_agree(object.union(testdata.tenants, {"acme-eu": object.union(
		testdata.tenants["acme-eu"],
		{"data_residency": "any"},
	)}))
}

_named_cluster_decisions_agree(tenants) if {
	tables := derived.tables with data.gpupaas.fleet as testdata.fleet with data.gpupaas.tenants as tenants
	intents := [_deploy(tenant, class, sharing, {"cluster": cluster}) |
		some tenant, _ in tenants
		some class in ["H100-80GB", "A100-40GB", "MI300X"]
		some sharing in ["none", "mig", "time-slicing"]
		some cluster in array.concat([c | some c, _ in testdata.fleet.clusters], ["mars"])
	]
	count(intents) > 50
	every intent in intents {
		with_tables := decision.result with input as intent
			with data.gpupaas.fleet as testdata.fleet
			with data.gpupaas.tenants as tenants
			with data.gpupaas.index as tables
		computed := decision.result with input as intent
			with data.gpupaas.fleet as testdata.fleet
			with data.gpupaas.tenants as tenants
		with_tables == computed
	}
}

test_a_deployment_naming_a_cluster_reads_the_table if {
	intent := _deploy("acme-eu", "H100-80GB", "none", {"cluster": "eu-west"})
	i := _tables.deploy_constraints["acme-eu"]["H100-80GB"].none
	marked := array.concat(array.slice(_tables.constraint_sets, 0, i), array.concat(
		[object.union(_tables.constraint_sets[i], {"marker": true})],
		array.slice(_tables.constraint_sets, i + 1, count(_tables.constraint_sets)),
	))
	got := decision.result with input as intent
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
		with data.gpupaas.index as object.union(_tables, {"constraint_sets": marked})
	got.constraints.marker == true
	got.constraints.eligible_clusters == ["eu-west"]
	got.constraints.node_affinity == [{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]}]
}

# a shared tenant like globex but for its name and namespaces: one profile, evaluated once
_twins := object.union(testdata.tenants, {"globex-2": object.union(
	testdata.tenants.globex,
	{"name": "globex-2", "namespaces": ["globex-2-ml"]},
)})

test_tenants_of_one_profile_share_their_entries_and_decide_as_computed if {
	tables := derived.tables with data.gpupaas.fleet as testdata.fleet with data.gpupaas.tenants as _twins
	tables.workload_constraints["globex-2"] == tables.workload_constraints.globex
	tables.deploy_constraints["globex-2"] == tables.deploy_constraints.globex
	tables.workload_constraints["acme-eu"] != tables.workload_constraints.globex
	intent := {"kind": "admit_workload", "admit_workload": {"namespace": "globex-2-ml", "name": "w"}}
	with_tables := decision.result with input as intent
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as _twins
		with data.gpupaas.index as tables
	computed := decision.result with input as intent
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as _twins
	with_tables == computed
	with_tables.tenant == "globex-2"
}

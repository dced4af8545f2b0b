package gpupaas.nodes_test

import data.gpupaas.nodes
import data.gpupaas.testdata

test_named_nodes_and_how if {
	workload := {
		"namespace": "default", "name": "w", "node_name": "a",
		"node_selector": {"kubernetes.io/hostname": "b"},
		"node_affinity": [
			[{"key": "kubernetes.io/hostname", "operator": "In", "values": ["a", "c"]}],
			[{"key": "metadata.name", "operator": "In", "values": ["d"]}, {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["e"]}],
		],
	}
	named := nodes.named_nodes with input as {"kind": "admit_workload", "admit_workload": workload}
	named == {
		"a": {"spec.nodeName", "node affinity term 0"},
		"b": {"node selector kubernetes.io/hostname"},
		"c": {"node affinity term 0"},
		"d": {"node affinity term 1"},
	}
	nodes.named_by("a") == "node affinity term 0, spec.nodeName" with input as {"kind": "admit_workload", "admit_workload": workload}
}

test_node_index_from_the_fleet if {
	index := nodes.node_index with data.gpupaas.fleet as testdata.fleet
	index["eu-acme-2"] == ["eu-west", "acme-h100-dedicated"]
	count(index) == 24
}

test_selected_dedicated_tenants if {
	workload := {"namespace": "default", "name": "w", "node_affinity": [
		[{"key": "gpupaas.io/pool", "operator": "In", "values": ["acme-h100-dedicated", "eu-h100-shared"]}],
		[{"key": "gpupaas.io/dedicated-tenant", "operator": "NotIn", "values": ["hooli"]}],
	]}
	tenants := nodes.selected_dedicated_tenants with input as {"kind": "admit_workload", "admit_workload": workload}
		with data.gpupaas.fleet as testdata.fleet
	tenants == {"acme-eu"}
}

# the rules write node_name_field out in their key sets
test_a_matchfields_term_on_the_node_name_field_names_nodes if {
	nodes.node_name_field == "metadata.name"
	nodes.term_names_nodes([{"key": nodes.node_name_field, "operator": "In", "values": ["gpu-node-1"]}])
	not nodes.term_names_nodes([{"key": "metadata.labels", "operator": "In", "values": ["gpu-node-1"]}])
}

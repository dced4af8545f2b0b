# METADATA
# title: Nodes and pools a workload names
# description: >-
#   The nodes a workload names (spec.nodeName, a kubernetes.io/hostname selector, hostname or
#   matchFields affinity) and what the caller's labels and the fleet data say of each, and the
#   dedicated pools it selects by label. Residency and isolation judge them.
package gpupaas.nodes

import data.gpupaas.lib

# how a workload's matchFields requirements appear: the only field Kubernetes selects nodes by.
# The rules below write it out ("metadata.name") in their key sets: a set naming this rule is
# built on every evaluation, a constant set once (nodes_test holds them equal).
node_name_field := "metadata.name"

# node name -> [cluster, pool] of every node the fleet lists (pools' node_names). The bundle carries
# it precomputed (pdp/config/index.py), so naming a node costs one lookup, not a scan of a
# 10,000-node fleet; bundles without it compute it here the same way (the first pool in name order
# wins where a name repeats, which the build refuses as NODE_NAME_CONFLICT).
node_index := data.gpupaas.index.nodes if data.gpupaas.index.nodes

node_index := _computed_node_index if not data.gpupaas.index.nodes

# node name -> every [cluster, pool] that lists it (more than one is a NODE_NAME_CONFLICT)
node_places[name] contains [c, p] if {
	some c, cluster in lib.clusters
	some p, pool in cluster.pools
	some name in object.get(pool, "node_names", [])
}

_computed_node_index := {name: min(places) | some name, places in node_places}

# node name -> how the workload names it: its spec.nodeName, its node selector on the hostname,
# or the In values on the hostname or on metadata.name (matchFields) of a node affinity term
named_nodes[name] contains "spec.nodeName" if name := lib.workload.node_name

named_nodes[name] contains lib.message(["node selector ", "kubernetes.io/hostname"]) if {
	name := lib.workload.node_selector["kubernetes.io/hostname"]
}

named_nodes[name] contains lib.message(["node affinity term ", i]) if {
	some i, term in object.get(lib.workload, "node_affinity", [])
	some requirement in term
	requirement.key in {"kubernetes.io/hostname", "metadata.name"}
	requirement.operator == "In"
	some name in requirement.values
}

# how messages say how a node is named
named_by(name) := concat(", ", sort(named_nodes[name]))

_candidate_labels := {node.name: lib.node_labels(node) | some node in lib.candidate_nodes}

# node name -> what is known of a named node: the labels the caller sent for it (the cluster's
# view, place_workload) and its pool in the fleet data; each fact has the node's region ("" when
# unknown) and the tenant of its dedicated pool ("" when shared)
named_node_facts[name] contains fact if {
	some name, _ in named_nodes
	labels := _candidate_labels[name]
	fact := {
		"source": "its labels",
		"region": object.get(labels, "topology.kubernetes.io/region", ""),
		"tenant": object.get(labels, "gpupaas.io/dedicated-tenant", ""),
	}
}

named_node_facts[name] contains fact if {
	some name, _ in named_nodes
	[c, p] := node_index[name]
	fact := {
		"source": lib.message(["the fleet data (pool ", p, " of cluster ", c, ")"]),
		"region": lib.clusters[c].region,
		"tenant": object.get(lib.clusters[c].pools[p], "tenant", ""),
	}
}

# a node affinity term names nodes (hostname or matchFields In): the named node rules judge it
term_names_nodes(term) if {
	some requirement in term
	requirement.key in {"kubernetes.io/hostname", "metadata.name"}
	requirement.operator == "In"
}

# the workload's node selector or spec.nodeName already names its node
names_its_node if lib.workload.node_name

names_its_node if lib.workload.node_selector["kubernetes.io/hostname"]

# pool name -> the tenants it is dedicated to
pool_tenants[p] contains t if {
	some t, pools in lib.dedicated_index
	some p in pools
}

# pools and tenants of dedicated pools a node affinity term or the node selector selects
# positively (In, a node selector value, or Exists on the dedicated-tenant label)
selected_dedicated_tenants contains t if {
	t := lib.workload.node_selector["gpupaas.io/dedicated-tenant"]
}

selected_dedicated_tenants contains t if {
	some t in pool_tenants[lib.workload.node_selector["gpupaas.io/pool"]]
}

selected_dedicated_tenants contains t if {
	some term in object.get(lib.workload, "node_affinity", [])
	some requirement in term
	some t in _selected_tenants(requirement)
}

_selected_tenants(requirement) := {t | some t in requirement.values} if {
	requirement.key == "gpupaas.io/dedicated-tenant"
	requirement.operator == "In"
}

_selected_tenants(requirement) := {t | some t, _ in lib.dedicated_index} if {
	requirement.key == "gpupaas.io/dedicated-tenant"
	requirement.operator == "Exists"
}

_selected_tenants(requirement) := {t | some p in requirement.values; some t in pool_tenants[p]} if {
	requirement.key == "gpupaas.io/pool"
	requirement.operator == "In"
}

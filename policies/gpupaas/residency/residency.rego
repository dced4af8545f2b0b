# METADATA
# title: Residency
# description: >-
#   Data residency: clusters, regions and nodes must lie in the jurisdiction the tenant's
#   data_residency allows ("any" allows every jurisdiction, "<j>-only" allows jurisdiction J).
package gpupaas.residency

import data.gpupaas.lib

_policy := "gpupaas.residency"

# METADATA
# title: Cluster outside the jurisdiction
# description: A deployment names a cluster outside the tenant's jurisdiction.
# custom:
#   code: RESIDENCY_VIOLATION
deny contains lib.reason(rego.metadata.rule(), _policy, msg) if {
	lib.kind == "deploy_model"
	t := lib.tenant
	cluster := lib.clusters[lib.payload.cluster]
	not lib.jurisdiction_allowed(t.data_residency, cluster.jurisdiction)
	msg := sprintf(`tenant "%s" (data_residency %s) may not deploy "%s" on cluster "%s" in jurisdiction %s`, [lib.tenant_name, t.data_residency, lib.payload.deployment, lib.payload.cluster, cluster.jurisdiction])
}

# METADATA
# title: Region selector outside the jurisdiction
# description: The workload's node selector names a region outside the tenant's jurisdiction.
# custom:
#   code: RESIDENCY_VIOLATION
deny contains lib.reason(rego.metadata.rule(), _policy, msg) if {
	t := lib.tenant
	region := lib.workload.node_selector[lib.region_label]
	not lib.region_allowed(t, region)
	msg := sprintf(`%s of tenant "%s" (data_residency %s) selects region %s in jurisdiction %s`, [lib.subject, lib.tenant_name, t.data_residency, region, _jurisdiction(region)])
}

# METADATA
# title: Region affinity outside the jurisdiction
# description: A required node affinity term of the workload admits regions outside the tenant's jurisdiction.
# custom:
#   code: RESIDENCY_VIOLATION
deny contains lib.reason(rego.metadata.rule(), _policy, msg) if {
	t := lib.tenant
	forbidden := {region |
		some term in lib.workload.node_affinity
		some requirement in term
		requirement.key == lib.region_label
		requirement.operator == "In"
		some region in requirement.values
		not lib.region_allowed(t, region)
	}
	count(forbidden) > 0
	msg := sprintf(`%s of tenant "%s" (data_residency %s) has a node affinity on regions [%s] outside its jurisdiction`, [lib.subject, lib.tenant_name, t.data_residency, lib.names(forbidden)])
}

_jurisdiction(region) := object.get(lib.region_jurisdiction, region, "unknown")

# METADATA
# title: Workload without region constraint
# description: >-
#   The workload of a residency-restricted tenant does not constrain its region; the node
#   affinity of the constraints must be added (the scheduler extender still filters nodes).
# custom:
#   code: RESIDENCY_UNCONSTRAINED
warn contains lib.reason(rego.metadata.rule(), _policy, msg) if {
	lib.kind == "admit_workload"
	t := lib.tenant
	t.data_residency != "any"
	not lib.workload.node_selector[lib.region_label]
	not _affinity_on_region
	msg := sprintf(`%s of tenant "%s" (data_residency %s) constrains no region; add the node affinity of the constraints`, [lib.subject, lib.tenant_name, t.data_residency])
}

_affinity_on_region if {
	some term in lib.workload.node_affinity
	some requirement in term
	requirement.key == lib.region_label
}

# METADATA
# title: Node outside the jurisdiction
# description: The node's region lies outside the tenant's jurisdiction.
# custom:
#   code: RESIDENCY_VIOLATION
node_rejections[node.name] contains lib.reason(rego.metadata.rule(), _policy, msg) if {
	t := lib.tenant
	some node in lib.candidate_nodes
	region := lib.node_labels(node)[lib.region_label]
	not lib.region_allowed(t, region)
	msg := sprintf(`node "%s" is in region %s (jurisdiction %s), outside data_residency %s of tenant "%s"`, [node.name, region, _jurisdiction(region), t.data_residency, lib.tenant_name])
}

# METADATA
# title: Node without region
# description: A node without region label cannot satisfy a residency other than any.
# custom:
#   code: RESIDENCY_VIOLATION
node_rejections[node.name] contains lib.reason(rego.metadata.rule(), _policy, msg) if {
	t := lib.tenant
	t.data_residency != "any"
	some node in lib.candidate_nodes
	not lib.node_labels(node)[lib.region_label]
	msg := sprintf(`node "%s" has no %s label, so it cannot satisfy data_residency %s of tenant "%s"`, [node.name, lib.region_label, t.data_residency, lib.tenant_name])
}

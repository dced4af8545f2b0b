# METADATA
# title: Residency
# description: >-
#   Data residency: clusters, regions and nodes must lie in the jurisdiction the tenant's
#   data_residency allows ("any" allows every jurisdiction, "<j>-only" allows jurisdiction J).
package gpupaas.residency

import data.gpupaas.lib
import data.gpupaas.nodes

# METADATA
# title: Cluster outside the jurisdiction
# description: A deployment names a cluster outside the tenant's jurisdiction.
# custom:
#   code: RESIDENCY_VIOLATION
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.residency"} if {
	input.kind == "deploy_model"
	t := lib.tenant
	cluster := lib.clusters[lib.payload.cluster]
	not lib.jurisdiction_allowed(t.data_residency, cluster.jurisdiction)
	msg := lib.message([`tenant "`, lib.tenant_name, `" (data_residency `, t.data_residency, `) may not deploy "`, lib.payload.deployment, `" on cluster "`, lib.payload.cluster, `" in jurisdiction `, cluster.jurisdiction])
	meta := rego.metadata.rule()
}

# METADATA
# title: Region selector outside the jurisdiction
# description: The workload's node selector names a region outside the tenant's jurisdiction.
# custom:
#   code: RESIDENCY_VIOLATION
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.residency"} if {
	input.kind in {"admit_workload", "place_workload"} # lib.workload_kinds, which OPA's indexer resolves
	region := lib.workload.node_selector["topology.kubernetes.io/region"]
	not lib.tenant_region_allowed(region)
	t := lib.tenant
	msg := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `" (data_residency `, t.data_residency, ") selects region ", region, " in jurisdiction ", _jurisdiction(region)])
	meta := rego.metadata.rule()
}

# METADATA
# title: Region affinity outside the jurisdiction
# description: A required node affinity term of the workload admits regions outside the tenant's jurisdiction.
# custom:
#   code: RESIDENCY_VIOLATION
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.residency"} if {
	input.kind in {"admit_workload", "place_workload"} # lib.workload_kinds, which OPA's indexer resolves
	forbidden := {region |
		some term in lib.workload.node_affinity
		some requirement in term
		requirement.key == "topology.kubernetes.io/region"
		requirement.operator == "In"
		some region in requirement.values
		not lib.tenant_region_allowed(region)
	}
	count(forbidden) > 0
	t := lib.tenant
	msg := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `" (data_residency `, t.data_residency, ") has a node affinity on regions [", lib.names(forbidden), "] outside its jurisdiction"])
	meta := rego.metadata.rule()
}

_jurisdiction(region) := object.get(lib.region_jurisdiction, region, "unknown")

# METADATA
# title: Region affinity by exclusion outside the jurisdiction
# description: >-
#   A required node affinity term bounds the region only by exclusion (NotIn, Exists): it admits
#   every region of the fleet it does not exclude, and some of them lie outside the tenant's
#   jurisdiction. A validating webhook cannot narrow the term, and the scheduler extender sees
#   only pods that ask for GPU extended resources, so the term is refused rather than trusted.
# custom:
#   code: RESIDENCY_VIOLATION
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.residency"} if {
	input.kind in {"admit_workload", "place_workload"} # lib.workload_kinds, which OPA's indexer resolves
	some i, term in lib.workload.node_affinity
	not _selects_regions(term) # first: most terms that name a region select it with In
	not lib.workload.node_selector["topology.kubernetes.io/region"]
	not nodes.names_its_node
	not nodes.term_names_nodes(term)
	_bounds_region(term)
	not _requires_no_region(term)
	excluded := {region |
		some requirement in term
		requirement.key == "topology.kubernetes.io/region"
		requirement.operator == "NotIn"
		some region in requirement.values
	}
	forbidden := {region | some region in (lib.fleet_regions - excluded); not lib.tenant_region_allowed(region)}
	count(forbidden) > 0
	t := lib.tenant
	msg := lib.message(["node affinity term ", i, " of ", lib.subject, ` of tenant "`, lib.tenant_name, `" (data_residency `, t.data_residency, ") excludes regions [", lib.names(excluded), "] only, so it admits regions [", lib.names(forbidden), "] outside its jurisdiction; select regions [", lib.names(lib.allowed_regions(t)), "] with In"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Affinity on nodes without region
# description: >-
#   A required node affinity term asks for nodes without a region label (DoesNotExist), which
#   cannot satisfy a residency other than any.
# custom:
#   code: RESIDENCY_VIOLATION
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.residency"} if {
	input.kind in {"admit_workload", "place_workload"} # lib.workload_kinds, which OPA's indexer resolves
	t := lib.tenant
	t.data_residency != "any"
	some i, term in lib.workload.node_affinity
	_requires_no_region(term)
	msg := lib.message(["node affinity term ", i, " of ", lib.subject, ` of tenant "`, lib.tenant_name, `" asks for nodes without a `, "topology.kubernetes.io/region", " label, which cannot satisfy data_residency ", t.data_residency])
	meta := rego.metadata.rule()
}

_selects_regions(term) if {
	some requirement in term
	requirement.key == "topology.kubernetes.io/region"
	requirement.operator == "In"
}

_bounds_region(term) if {
	some requirement in term
	requirement.key == "topology.kubernetes.io/region"
}

_requires_no_region(term) if {
	some requirement in term
	requirement.key == "topology.kubernetes.io/region"
	requirement.operator == "DoesNotExist"
}

# METADATA
# title: Named node outside the jurisdiction
# description: >-
#   A node the workload names (spec.nodeName, a kubernetes.io/hostname selector or affinity, a
#   matchFields term) lies outside the tenant's jurisdiction by its labels or by the fleet data,
#   or has no region label. Judged with or without a view of the cluster.
# custom:
#   code: RESIDENCY_VIOLATION
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.residency"} if {
	input.kind in {"admit_workload", "place_workload"} # lib.workload_kinds, which OPA's indexer resolves
	some name, facts in nodes.named_node_facts # first: most workloads name no node
	t := lib.tenant
	t.data_residency != "any"
	some fact in facts
	not lib.tenant_region_allowed(fact.region)
	msg := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `" (data_residency `, t.data_residency, `) names node "`, name, `" (`, nodes.named_by(name), "), which by ", fact.source, " is ", _where(fact.region)])
	meta := rego.metadata.rule()
}

_where(region) := lib.message(["in region ", region, " (jurisdiction ", _jurisdiction(region), ")"]) if region != ""

_where("") := lib.message(["without a ", "topology.kubernetes.io/region", " label"])

# METADATA
# title: Named node unknown
# description: >-
#   A node the workload names is neither in the fleet data of the bundle nor known to the caller,
#   so nothing shows that it lies in the tenant's jurisdiction.
# custom:
#   code: RESIDENCY_VIOLATION
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.residency"} if {
	input.kind == "admit_workload"
	some name, _ in nodes.named_nodes # first: most workloads name no node
	t := lib.tenant
	t.data_residency != "any"
	not nodes.named_node_facts[name]
	msg := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `" (data_residency `, t.data_residency, `) names node "`, name, `" (`, nodes.named_by(name), "), which the fleet data does not list, so its region cannot be checked"])
	meta := rego.metadata.rule()
}

# the workload pins its region: every required node affinity term selects regions with In or
# names nodes (the rules above judge which), or its node selector names a region or a node. The
# affinity first: OPA stops at the first rule that holds, and the workloads that follow the
# decision's constraints pin their region by node affinity (-20 allocations for them, +6 for a
# node selector; docs/performance.md, "Fifth pass").
region_pinned if {
	count(lib.workload.node_affinity) > 0
	every term in lib.workload.node_affinity {
		_pins_region(term)
	}
}

region_pinned if lib.workload.node_selector["topology.kubernetes.io/region"]

region_pinned if nodes.names_its_node

_pins_region(term) if _selects_regions(term)

_pins_region(term) if nodes.term_names_nodes(term)

# METADATA
# title: Workload without region constraint
# description: >-
#   The workload of a residency-restricted tenant does not pin its region; the node
#   affinity of the constraints must be added (the scheduler extender still filters nodes).
# custom:
#   code: RESIDENCY_UNCONSTRAINED
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.residency"} if {
	input.kind == "admit_workload"
	not region_pinned # first: most admissions pin their region
	lib.places_pods
	t := lib.tenant
	t.data_residency != "any"
	count(lib.resource_claims) == 0
	msg := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `" (data_residency `, t.data_residency, ") does not pin its region; add the node affinity of the constraints"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Device claims without region constraint
# description: >-
#   The workload claims devices through Dynamic Resource Allocation (resourceClaims), which the
#   scheduler extender never sees, and does not pin its region: admission is the only check of
#   its placement, so the region must be pinned there.
# custom:
#   code: RESIDENCY_UNCONSTRAINED
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.residency"} if {
	input.kind in {"admit_workload", "place_workload"} # lib.workload_kinds, which OPA's indexer resolves
	count(lib.resource_claims) > 0
	t := lib.tenant
	t.data_residency != "any"
	not region_pinned
	msg := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `" (data_residency `, t.data_residency, ") claims devices through resourceClaims [", lib.names(lib.resource_claims), "], which the scheduler extender does not judge, and does not pin its region; select regions [", lib.names(lib.allowed_regions(t)), "] with a node selector or node affinity In"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Node outside the jurisdiction
# description: The node's region lies outside the tenant's jurisdiction.
# custom:
#   code: RESIDENCY_VIOLATION
node_rejections[node.name] contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.residency"} if {
	t := lib.tenant
	some node in lib.candidate_nodes
	region := lib.node_labels(node)["topology.kubernetes.io/region"]
	not lib.tenant_region_allowed(region)
	msg := lib.message([`node "`, node.name, `" is in region `, region, " (jurisdiction ", _jurisdiction(region), "), outside data_residency ", t.data_residency, ` of tenant "`, lib.tenant_name, `"`])
	meta := rego.metadata.rule()
}

# METADATA
# title: Node without region
# description: A node without region label cannot satisfy a residency other than any.
# custom:
#   code: RESIDENCY_VIOLATION
node_rejections[node.name] contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.residency"} if {
	t := lib.tenant
	t.data_residency != "any"
	some node in lib.candidate_nodes
	not lib.node_labels(node)["topology.kubernetes.io/region"]
	msg := lib.message([`node "`, node.name, `" has no `, "topology.kubernetes.io/region", " label, so it cannot satisfy data_residency ", t.data_residency, ` of tenant "`, lib.tenant_name, `"`])
	meta := rego.metadata.rule()
}

# METADATA
# title: Placement
# description: >-
#   Eligible clusters and nodes, and the scheduling constraints of a decision: node selector,
#   node affinity, tolerations and priority class.
package gpupaas.placement

import data.gpupaas.isolation
import data.gpupaas.lib
import data.gpupaas.residency
import data.gpupaas.sharing

# ---------------------------------------------------------------------------------------------
# Eligible clusters
# ---------------------------------------------------------------------------------------------

# the requested class is known and entitled, so no class reason explains a lack of clusters
_class_usable if {
	lib.gpu_class_known(lib.requested_class)
	lib.requested_class in lib.entitled_classes(lib.tenant)
}

# METADATA
# title: Unknown cluster
# description: The deployment names a cluster that is not in the fleet.
# custom:
#   code: NO_ELIGIBLE_CLUSTER
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.placement"} if {
	input.kind == "deploy_model"
	lib.tenant
	name := lib.payload.cluster
	not lib.clusters[name]
	msg := lib.message([`cluster "`, name, `" named by `, lib.subject, ` of tenant "`, lib.tenant_name, `" is not in the fleet`])
	meta := rego.metadata.rule()
}

# METADATA
# title: Cluster not eligible
# description: >-
#   The cluster the deployment names is in the tenant's jurisdiction but has no pool of the class,
#   isolation and sharing strategy asked for.
# custom:
#   code: NO_ELIGIBLE_CLUSTER
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.placement"} if {
	input.kind == "deploy_model"
	_class_usable
	t := lib.tenant
	cluster := lib.clusters[lib.payload.cluster]
	lib.jurisdiction_allowed(t.data_residency, cluster.jurisdiction)
	count(lib.target_clusters) == 0
	not lib.sharing_forbidden
	not lib.sharing_unavailable
	msg := lib.message([`cluster "`, lib.payload.cluster, `" has no `, t.isolation, " pool of GPU class ", lib.requested_class, " with sharing ", lib.requested_sharing, " for ", lib.subject, ` of tenant "`, lib.tenant_name, `"`])
	meta := rego.metadata.rule()
}

# METADATA
# title: No eligible cluster
# description: No cluster satisfies residency, GPU class and isolation together.
# custom:
#   code: NO_ELIGIBLE_CLUSTER
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.placement"} if {
	lib.kind in {"deploy_model", "scale"}
	_class_usable
	not lib.payload.cluster
	count(lib.target_clusters) == 0
	not lib.sharing_forbidden
	not lib.sharing_unavailable
	t := lib.tenant
	msg := lib.message(["no cluster in data_residency ", t.data_residency, " has a ", t.isolation, " pool of GPU class ", lib.requested_class, " with sharing strategy [", lib.names(lib.intent_strategies), "] for ", lib.subject, ` of tenant "`, lib.tenant_name, `"`])
	meta := rego.metadata.rule()
}

# ---------------------------------------------------------------------------------------------
# Nodes (place_workload)
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Node of another GPU class
# description: The node does not carry the GPU class the workload pins.
# custom:
#   code: NODE_GPU_CLASS_MISMATCH
node_rejections[node.name] contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.placement"} if {
	lib.tenant
	pinned := lib.pinned_class
	some node in lib.candidate_nodes
	classes := lib.classes_of_labels(lib.node_labels(node))
	not pinned in classes
	msg := lib.message([`node "`, node.name, `" carries GPU class [`, lib.names(classes), "], not ", pinned, " pinned by ", lib.subject])
	meta := rego.metadata.rule()
}

# METADATA
# title: Node without an entitled GPU class
# description: The node carries no entitled GPU class of the vendor the workload asks for.
# custom:
#   code: NODE_GPU_CLASS_MISMATCH
node_rejections[node.name] contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.placement"} if {
	not lib.pinned_product
	wanted := {class |
		some class in lib.entitled_classes(lib.tenant)
		lib.vendor_of(class) in lib.requested_vendors
	}
	count(lib.requested_vendors) > 0
	some node in lib.candidate_nodes
	classes := lib.classes_of_labels(lib.node_labels(node))
	count(classes & wanted) == 0
	msg := lib.message([`node "`, node.name, `" carries GPU class [`, lib.names(classes), "], none of the entitled classes [", lib.names(wanted), `] of tenant "`, lib.tenant_name, `" for `, lib.subject])
	meta := rego.metadata.rule()
}

# GPUs of each entitled class the tenant holds now. The extender reports what the tenant's pods
# hold (`held`: resources on one of the nodes whose labels are listed: one labels map for a bound
# pod, the nodes allowed to a pod whose binding the extender has not seen yet); a held entry counts
# once for a class, however many of its nodes have it. Without `held`, the intent's usage.
# [entry, class, GPUs] for each node of each held entry, its class computed once per node
_held_gpus contains [i, class, lib.node_gpus(entry.resources, shown)] if {
	some i, entry in lib.payload.held
	some labels in entry.on
	shown := object.filter(labels, lib.node_label_keys)
	some class in lib.classes_of_labels(shown)
}

# [entry, class] -> what the entry counts for that class (the most among its nodes of the class)
_held_by_entry[[i, class]] := max({gpus | some [j, c, gpus] in _held_gpus; j == i; c == class}) if {
	some [i, class, _] in _held_gpus
}

_held_usage[class] := sum([gpus | some [_, c], gpus in _held_by_entry; c == class]) if {
	some class in lib.entitled_classes(lib.tenant)
}

_class_usage(class) := _held_usage[class] if lib.payload.held

else := lib.usage(class)

# A tenant of a tier that borrows (lib.tiers: spot) that allows preemption borrows idle capacity
# beyond its entitlement, always preemptible: Kueue lends it the cohort's idle quota
# (pdp/substrate/kueue/objects.py, TierRules) and reclaims it, the scheduler preempts its pods for
# any higher tier's. Its entitlement is the floor it is guaranteed, not a cap on what it may borrow.
_borrows if {
	lib.tenant.allow_preemption == true
	lib.tiers[lib.tenant.tier].borrows == true
}

# METADATA
# title: Node's GPU class above the entitlement
# description: >-
#   The workload's GPUs on the node, with what the tenant holds of the node's GPU class now,
#   exceed the tenant's entitlement of that class. Quotas cap a tenant's GPUs per resource, not
#   per class: a pod that names no class is held to each class here, node by node. A tenant that
#   borrows (spot, allowing preemption) is not held.
# custom:
#   code: ENTITLEMENT_EXCEEDED
node_rejections[node.name] contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.placement"} if {
	input.kind == "place_workload"
	count(lib.gpu_resources) > 0
	not _borrows
	some node in lib.candidate_nodes
	labels := lib.node_labels(node)
	some class in lib.classes_of_labels(labels)
	limit := lib.tenant.entitlements[class]
	need := lib.node_gpus(lib.resources, labels)
	used := _class_usage(class)
	used + need > limit
	msg := lib.message([`node "`, node.name, `" has GPU class `, class, `: tenant "`, lib.tenant_name, `" holds `, sprintf("%v", [used]), " and ", lib.subject, " asks for ", sprintf("%v", [need]), ", above the entitlement of ", limit])
	meta := rego.metadata.rule()
}

# the node rejections of every area, each materialized once: node name -> reasons
_rejections := [node_rejections, residency.node_rejections, isolation.node_rejections, sharing.node_rejections]

# node name -> every reason that rejects it
_node_reasons := {name: reasons |
	lib.tenant
	some node in lib.candidate_nodes
	name := node.name
	reasons := union({object.get(area, name, set()) | some area in _rejections})
}

_eligible_nodes := {name | some name, reasons in _node_reasons; count(reasons) == 0}

# METADATA
# title: No eligible node
# description: Every candidate node was rejected.
# custom:
#   code: NO_ELIGIBLE_NODE
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.placement"} if {
	input.kind == "place_workload" # the kind of every candidate node: the indexer skips the rule for others
	count(_node_reasons) > 0
	count(_eligible_nodes) == 0
	msg := lib.message(["all ", count(_node_reasons), " candidate nodes were rejected for ", lib.subject, ` of tenant "`, lib.tenant_name, `"`])
	meta := rego.metadata.rule()
}

# ---------------------------------------------------------------------------------------------
# Constraints
# ---------------------------------------------------------------------------------------------

constraints.eligible_clusters := sort(lib.target_clusters) if lib.lists_clusters

# create_tenant: the clusters of the residency offering at least one entitled class, in a pool of
# the fleet or one awaiting the tenant (lib.awaiting_pools: its objects go where its pool is)
constraints.eligible_clusters := sort({c |
	some c in lib.residency_clusters(t)
	some pool in lib.clusters[c].pools
	pool.gpu_class in lib.entitled_classes(t)
} | {c |
	some [c, p] in lib.awaiting_pools(t.name)
	c in lib.residency_clusters(t)
	lib.awaiting[c][p].gpu_class in lib.entitled_classes(t)
}) if {
	t := lib.new_tenant
}

_class_selector[label.key] := label.value if {
	label := lib.gpu_classes[lib.requested_class].node_label
}

_class_selector["gpupaas.io/dedicated-tenant"] := lib.tenant_name if {
	lib.tenant.isolation == "dedicated"
}

constraints.node_selector := _class_selector if {
	lib.schedules
	lib.tenant
	count(_class_selector) > 0
}

_affinity contains {"key": "topology.kubernetes.io/region", "operator": "In", "values": sort(lib.target_regions)} if {
	lib.tenant.data_residency != "any"
	count(lib.target_regions) > 0
}

_affinity contains {"key": "gpupaas.io/dedicated-tenant", "operator": "DoesNotExist"} if {
	lib.tenant.isolation == "shared"
}

constraints.node_affinity := sort(_affinity) if {
	lib.schedules
	count(_affinity) > 0
}

constraints.tolerations := [{"key": "gpupaas.io/dedicated", "operator": "Equal", "value": lib.tenant_name, "effect": "NoSchedule"}] if {
	lib.schedules
	lib.tenant.isolation == "dedicated"
}

constraints.priority_class_name := lib.tiers[lib.tenant.tier].priority_class if {
	lib.schedules
}

constraints.eligible_nodes := sort(_eligible_nodes) if input.kind == "place_workload"

# the node label keys the policies read (lib.node_labels): the scheduler extender groups nodes on them
constraints.node_label_keys := sort(lib.node_label_keys) if input.kind == "place_workload"

# sorted by node name explicitly: object iteration order is not part of Rego's semantics (the
# wasm target iterates in another order than the interpreter)
constraints.rejected_nodes := [{"node": name, "reasons": lib.sorted_reasons(reasons)} |
	some name in sort(object.keys(_node_reasons))
	reasons := _node_reasons[name]
	count(reasons) > 0
] if {
	input.kind == "place_workload"
}

# METADATA
# title: Isolation
# description: >-
#   Dedicated versus shared tenancy: no workload may reach another tenant's dedicated pool, a
#   dedicated tenant stays in its pool, and a node is not shared when either side is dedicated.
package gpupaas.isolation

import data.gpupaas.lib
import data.gpupaas.nodes

# the tenant of the workload; "" when its namespace belongs to no tenant, for which every
# dedicated pool is foreign (the same rules decide workloads of any namespace that reach one)
default _self := ""

_self := lib.tenant_name

# how messages name the tenants whose dedicated pools are foreign to the workload
_others := lib.message([`tenants other than "`, lib.tenant_name, `"`]) if {
	lib.tenant
} else := lib.message([`any tenant (namespace "`, lib.workload.namespace, `" belongs to no tenant)`])

# how messages name the workload and its tenant
_whose := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `"`]) if {
	lib.tenant
} else := lib.message([lib.subject, ` (namespace "`, lib.workload.namespace, `" belongs to no tenant)`])

# the toleration tolerates the NoSchedule taint of other tenants' dedicated pools
_tolerates_foreign(toleration) if {
	toleration.key == "gpupaas.io/dedicated"
	object.get(toleration, "operator", "Equal") == "Equal"
	object.get(toleration, "value", "") != _self
}

_tolerates_foreign(toleration) if {
	toleration.operator == "Exists" # first: the rarer operator
	object.get(toleration, "key", "") in {"", "gpupaas.io/dedicated"}
}

_no_schedule(toleration) if object.get(toleration, "effect", "") in {"", "NoSchedule"}

# METADATA
# title: Foreign toleration
# description: >-
#   A toleration lets the workload onto the dedicated pool of another tenant; a workload whose
#   namespace belongs to no tenant has no dedicated pool of its own, GPUs or not.
# custom:
#   code: ISOLATION_FOREIGN_POOL
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.isolation"} if {
	some i, toleration in object.get(lib.workload, "tolerations", [])
	_tolerates_foreign(toleration) # first: a workload's tolerations are mostly of its own pool
	_no_schedule(toleration)
	msg := lib.message(["toleration ", i, " of ", lib.subject, ` (key "`, object.get(toleration, "key", ""), `", operator `, object.get(toleration, "operator", "Equal"), `, value "`, object.get(toleration, "value", ""), `") tolerates the `, "gpupaas.io/dedicated", " taint of dedicated pools of ", _others])
	meta := rego.metadata.rule()
}

# METADATA
# title: Foreign pool selector
# description: The workload's node selector names another tenant's dedicated pool.
# custom:
#   code: ISOLATION_FOREIGN_POOL
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.isolation"} if {
	other := lib.workload.node_selector["gpupaas.io/dedicated-tenant"]
	other != _self
	msg := lib.message([_whose, " selects ", "gpupaas.io/dedicated-tenant", "=", other, ", the dedicated pool of another tenant"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Foreign pool by name or affinity
# description: >-
#   The workload selects another tenant's dedicated pool by its gpupaas.io/pool label (node
#   selector or affinity In), or by a node affinity on the dedicated-tenant label (In, Exists).
# custom:
#   code: ISOLATION_FOREIGN_POOL
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.isolation"} if {
	selected := nodes.selected_dedicated_tenants
	count(selected) > 0 # first: most workloads select no dedicated pool by label
	others := selected - {_self, object.get(lib.workload, ["node_selector", "gpupaas.io/dedicated-tenant"], _self)}
	count(others) > 0
	msg := lib.message([_whose, " selects nodes of the dedicated pools of tenant(s) [", lib.names(others), "] by ", "gpupaas.io/pool", " or ", "gpupaas.io/dedicated-tenant", " (pools [", lib.names({p | some t in others; some p in lib.dedicated_pools(t)}), "])"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Named node of a foreign pool
# description: >-
#   A node the workload names (spec.nodeName, a kubernetes.io/hostname selector or affinity, a
#   matchFields term) belongs to another tenant's dedicated pool, by its labels or by the fleet
#   data; spec.nodeName even skips the pool's taint.
# custom:
#   code: ISOLATION_FOREIGN_POOL
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.isolation"} if {
	some name, facts in nodes.named_node_facts
	some fact in facts
	fact.tenant != ""
	fact.tenant != _self
	msg := lib.message([_whose, ` names node "`, name, `" (`, nodes.named_by(name), "), which by ", fact.source, ` belongs to the dedicated pool of tenant "`, fact.tenant, `"`])
	meta := rego.metadata.rule()
}

# METADATA
# title: Named node outside the dedicated pool
# description: >-
#   A dedicated tenant's workload names a node that is not in its dedicated pool, or that
#   neither the fleet data nor the caller knows.
# custom:
#   code: ISOLATION_SHARED_POOL
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.isolation"} if {
	lib.tenant.isolation == "dedicated"
	some name, facts in nodes.named_node_facts
	some fact in facts
	fact.tenant == ""
	msg := lib.message([lib.subject, ` names node "`, name, `" (`, nodes.named_by(name), "), which by ", fact.source, ` is not in a dedicated pool of tenant "`, lib.tenant_name, `"`])
	meta := rego.metadata.rule()
}

# METADATA
# title: Named node unknown to a dedicated tenant
# description: >-
#   A dedicated tenant's workload names a node the fleet data does not list, so nothing shows
#   that it is in the tenant's dedicated pool.
# custom:
#   code: ISOLATION_SHARED_POOL
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.isolation"} if {
	input.kind == "admit_workload"
	lib.tenant.isolation == "dedicated"
	some name, _ in nodes.named_nodes
	not nodes.named_node_facts[name]
	msg := lib.message([lib.subject, ` names node "`, name, `" (`, nodes.named_by(name), `), which the fleet data does not list, so it is not known to be in a dedicated pool of tenant "`, lib.tenant_name, `"`])
	meta := rego.metadata.rule()
}

# the workload pins its own dedicated pool: its node selector names its dedicated tenant, one
# of its pools or a node, or every node affinity term does (rules above judge which)
_pool_pinned if lib.workload.node_selector["gpupaas.io/dedicated-tenant"] == lib.tenant_name

_pool_pinned if lib.workload.node_selector["gpupaas.io/pool"] in lib.dedicated_pools(lib.tenant_name)

_pool_pinned if nodes.names_its_node

_pool_pinned if {
	count(lib.workload.node_affinity) > 0
	every term in lib.workload.node_affinity {
		_pins_own_pool(term)
	}
}

_pins_own_pool(term) if nodes.term_names_nodes(term)

_pins_own_pool(term) if {
	some requirement in term
	requirement.key == "gpupaas.io/dedicated-tenant"
	requirement.operator == "In"
	requirement.values == [lib.tenant_name]
}

_pins_own_pool(term) if {
	some requirement in term
	requirement.key == "gpupaas.io/pool"
	requirement.operator == "In"
	count(requirement.values) > 0
	every pool in requirement.values {
		pool in lib.dedicated_pools(lib.tenant_name)
	}
}

# METADATA
# title: Device claims outside the dedicated pool
# description: >-
#   A dedicated tenant's workload claims devices through Dynamic Resource Allocation, which the
#   scheduler extender never sees, and does not pin its dedicated pool: admission is the only
#   check that keeps it in the pool.
# custom:
#   code: ISOLATION_SHARED_POOL
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.isolation"} if {
	count(lib.resource_claims) > 0
	lib.tenant.isolation == "dedicated"
	not _pool_pinned
	msg := lib.message([lib.subject, ` of dedicated tenant "`, lib.tenant_name, `" claims devices through resourceClaims [`, lib.names(lib.resource_claims), "], which the scheduler extender does not judge, and does not pin its pool; select ", "gpupaas.io/dedicated-tenant", "=", lib.tenant_name, " or ", "gpupaas.io/pool", " In [", lib.names(lib.dedicated_pools(lib.tenant_name)), "]"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Node of a foreign pool
# description: The node belongs to another tenant's dedicated pool.
# custom:
#   code: ISOLATION_FOREIGN_POOL
node_rejections[node.name] contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.isolation"} if {
	lib.tenant
	some node in lib.candidate_nodes
	other := lib.node_labels(node)["gpupaas.io/dedicated-tenant"]
	other != lib.tenant_name
	msg := lib.message([`node "`, node.name, `" belongs to the dedicated pool of tenant "`, other, `", not "`, lib.tenant_name, `"`])
	meta := rego.metadata.rule()
}

# METADATA
# title: Dedicated tenant outside its pool
# description: A dedicated tenant may only run on the nodes of its own dedicated pool.
# custom:
#   code: ISOLATION_SHARED_POOL
node_rejections[node.name] contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.isolation"} if {
	lib.tenant.isolation == "dedicated"
	some node in lib.candidate_nodes
	object.get(lib.node_labels(node), "gpupaas.io/dedicated-tenant", "") != lib.tenant_name
	msg := lib.message([`node "`, node.name, `" is not in a dedicated pool of tenant "`, lib.tenant_name, `" (label `, "gpupaas.io/dedicated-tenant", `="`, object.get(lib.node_labels(node), "gpupaas.io/dedicated-tenant", ""), `")`])
	meta := rego.metadata.rule()
}

# METADATA
# title: Node occupied
# description: The node hosts pods of another tenant and either tenant is dedicated.
# custom:
#   code: ISOLATION_NODE_OCCUPIED
node_rejections[node.name] contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.isolation"} if {
	t := lib.tenant
	some node in lib.candidate_nodes
	some other in lib.node_tenants(node)
	other != lib.tenant_name
	"dedicated" in {t.isolation, object.get(lib.tenants, [other, "isolation"], "shared")}
	msg := lib.message([`node "`, node.name, `" hosts pods of tenant "`, other, `" (isolation `, object.get(lib.tenants, [other, "isolation"], "unknown"), `) and tenant "`, lib.tenant_name, `" has isolation `, t.isolation, "; a dedicated tenant shares no node"])
	meta := rego.metadata.rule()
}

constraints.isolation := {
	"mode": t.isolation,
	"gpu_sharing": t.allow_gpu_sharing,
	"sharing_strategies": _sharing_strategies(t),
	"dedicated_pools": sort(lib.dedicated_pools(lib.tenant_name)),
} if {
	lib.lists_clusters
	t := lib.tenant
}

# the sharing strategies the tenant may use for the intent's classes: ["none"] when it forbids
# sharing, else the strategies of the pools of those classes its residency and isolation allow
_sharing_strategies(t) := ["none"] if {
	t.allow_gpu_sharing != true
} else := sort(lib.eligible_strategies(t, lib.intent_classes))

# METADATA
# title: Isolation
# description: >-
#   Dedicated versus shared tenancy: no workload may reach another tenant's dedicated pool, a
#   dedicated tenant stays in its pool, and a node is not shared when either side is dedicated.
package gpupaas.isolation

import data.gpupaas.lib

_policy := "gpupaas.isolation"

# the toleration tolerates the NoSchedule taint of other tenants' dedicated pools
_tolerates_foreign(toleration) if {
	toleration.key == lib.dedicated_taint
	object.get(toleration, "operator", "Equal") == "Equal"
	object.get(toleration, "value", "") != lib.tenant_name
}

_tolerates_foreign(toleration) if {
	object.get(toleration, "key", "") in {"", lib.dedicated_taint}
	toleration.operator == "Exists"
}

_no_schedule(toleration) if object.get(toleration, "effect", "") in {"", "NoSchedule"}

# METADATA
# title: Foreign toleration
# description: A toleration lets the workload onto the dedicated pool of another tenant.
# custom:
#   code: ISOLATION_FOREIGN_POOL
deny contains lib.reason(rego.metadata.rule(), _policy, msg) if {
	lib.tenant
	some i, toleration in object.get(lib.workload, "tolerations", [])
	_no_schedule(toleration)
	_tolerates_foreign(toleration)
	msg := sprintf(`toleration %d of %s (key "%s", operator %s, value "%s") tolerates the %s taint of dedicated pools of tenants other than "%s"`, [i, lib.subject, object.get(toleration, "key", ""), object.get(toleration, "operator", "Equal"), object.get(toleration, "value", ""), lib.dedicated_taint, lib.tenant_name])
}

# METADATA
# title: Foreign pool selector
# description: The workload's node selector names another tenant's dedicated pool.
# custom:
#   code: ISOLATION_FOREIGN_POOL
deny contains lib.reason(rego.metadata.rule(), _policy, msg) if {
	lib.tenant
	other := lib.workload.node_selector[lib.dedicated_tenant_label]
	other != lib.tenant_name
	msg := sprintf(`%s of tenant "%s" selects %s=%s, the dedicated pool of another tenant`, [lib.subject, lib.tenant_name, lib.dedicated_tenant_label, other])
}

# METADATA
# title: Node of a foreign pool
# description: The node belongs to another tenant's dedicated pool.
# custom:
#   code: ISOLATION_FOREIGN_POOL
node_rejections[node.name] contains lib.reason(rego.metadata.rule(), _policy, msg) if {
	lib.tenant
	some node in lib.candidate_nodes
	other := lib.node_labels(node)[lib.dedicated_tenant_label]
	other != lib.tenant_name
	msg := sprintf(`node "%s" belongs to the dedicated pool of tenant "%s", not "%s"`, [node.name, other, lib.tenant_name])
}

# METADATA
# title: Dedicated tenant outside its pool
# description: A dedicated tenant may only run on the nodes of its own dedicated pool.
# custom:
#   code: ISOLATION_SHARED_POOL
node_rejections[node.name] contains lib.reason(rego.metadata.rule(), _policy, msg) if {
	lib.tenant.isolation == "dedicated"
	some node in lib.candidate_nodes
	object.get(lib.node_labels(node), lib.dedicated_tenant_label, "") != lib.tenant_name
	msg := sprintf(`node "%s" is not in a dedicated pool of tenant "%s" (label %s="%s")`, [node.name, lib.tenant_name, lib.dedicated_tenant_label, object.get(lib.node_labels(node), lib.dedicated_tenant_label, "")])
}

# METADATA
# title: Node occupied
# description: The node hosts pods of another tenant and either tenant is dedicated.
# custom:
#   code: ISOLATION_NODE_OCCUPIED
node_rejections[node.name] contains lib.reason(rego.metadata.rule(), _policy, msg) if {
	t := lib.tenant
	some node in lib.candidate_nodes
	some other in lib.node_tenants(node)
	other != lib.tenant_name
	"dedicated" in {t.isolation, object.get(lib.tenants, [other, "isolation"], "shared")}
	msg := sprintf(`node "%s" hosts pods of tenant "%s" (isolation %s) and tenant "%s" has isolation %s; a dedicated tenant shares no node`, [node.name, other, object.get(lib.tenants, [other, "isolation"], "unknown"), lib.tenant_name, t.isolation])
}

constraints.isolation := {
	"mode": t.isolation,
	"gpu_sharing": t.allow_gpu_sharing,
	"sharing_strategies": _sharing_strategies(t),
	"dedicated_pools": sort(lib.dedicated_pools(lib.tenant_name)),
} if {
	lib.kind in {"deploy_model", "scale", "request_gpu_sharing", "admit_workload", "place_workload"}
	t := lib.tenant
}

# the sharing strategies the tenant may use for the intent's classes: ["none"] when it forbids
# sharing, else the strategies of the pools of those classes its residency and isolation allow
_sharing_strategies(t) := ["none"] if {
	t.allow_gpu_sharing != true
} else := sort({lib.pool_strategy(lib.clusters[c].pools[p]) |
	some [c, p] in lib.eligible_pools(t, lib.intent_classes, lib.sharing_strategies)
})

# METADATA
# title: Tenancy
# description: >-
#   Tenant documents: contradictions, satisfiability against the fleet, namespace ownership, the
#   create_tenant intent, and the configuration violations that make the build refuse a bundle.
package gpupaas.tenancy

import data.gpupaas.lib
import data.gpupaas.nodes

_policy := "gpupaas.tenancy"

# ---------------------------------------------------------------------------------------------
# Tenant document checks: each returns a set of {"code", "path", "message"} findings
# ---------------------------------------------------------------------------------------------

_finding(meta, path, msg) := {"code": meta.custom.code, "path": path, "message": msg}

# METADATA
# title: Non-preemptible spot tenant
# description: A spot tenant must allow preemption.
# custom:
#   code: TENANT_CONTRADICTION
_contradictions(t) := {_finding(rego.metadata.rule(), ["tenant", "allow_preemption"], msg) |
	t.tier == "spot"
	t.allow_preemption == false
	msg := lib.message([`tenant "`, t.name, `" is tier spot but sets allow_preemption false; spot capacity is always preemptible`])
}

# METADATA
# title: Unsatisfiable residency
# description: No cluster of the fleet lies in the tenant's jurisdiction.
# custom:
#   code: RESIDENCY_UNSATISFIABLE
_residency_unsatisfiable(t) := {_finding(rego.metadata.rule(), ["tenant", "data_residency"], msg) |
	count(lib.residency_clusters(t)) == 0
	msg := lib.message(["no cluster of the fleet satisfies data_residency ", t.data_residency, ` of tenant "`, t.name, `"`])
}

# METADATA
# title: Unknown entitled GPU class
# description: An entitlement names a GPU class the fleet does not define.
# custom:
#   code: GPU_CLASS_UNKNOWN
_unknown_classes(t) := {_finding(rego.metadata.rule(), ["tenant", "entitlements", class], msg) |
	some class, _ in t.entitlements
	not lib.gpu_class_known(class)
	msg := lib.message([`tenant "`, t.name, `" is entitled to GPU class "`, class, `", which the fleet does not define`])
}

# METADATA
# title: Unsatisfiable entitlement
# description: >-
#   An entitled GPU class is offered by no pool (of any isolation, or awaiting the tenant: the pool
#   the operator declared for it before it was onboarded) in the clusters of the tenant's
#   residency. Not reported when the residency itself is unsatisfiable.
# custom:
#   code: ENTITLEMENT_UNSATISFIABLE
_unsatisfiable_classes(t) := {_finding(rego.metadata.rule(), ["tenant", "entitlements", class], msg) |
	count(lib.residency_clusters(t)) > 0
	offered := lib.offered_classes(t) | lib.awaiting_classes(t)
	some class, _ in t.entitlements
	lib.gpu_class_known(class)
	not class in offered
	msg := lib.message([`tenant "`, t.name, `" is entitled to GPU class `, class, ", which no cluster of its data_residency ", t.data_residency, " offers"])
}

# METADATA
# title: Namespace conflict
# description: A namespace of the tenant is already owned by another tenant.
# custom:
#   code: NAMESPACE_CONFLICT
_namespace_conflicts(t) := {_finding(rego.metadata.rule(), ["tenant", "namespaces", i], msg) |
	some i, ns in t.namespaces
	others := object.get(lib.namespace_owners, ns, set()) - {t.name}
	count(others) > 0
	msg := lib.message([`namespace "`, ns, `" of tenant "`, t.name, `" is already owned by tenant(s) [`, lib.names(others), "]"])
}

# every finding of a tenant document
findings(t) := union({
	_contradictions(t),
	_residency_unsatisfiable(t),
	_unknown_classes(t),
	_unsatisfiable_classes(t),
	_namespace_conflicts(t),
})

# ---------------------------------------------------------------------------------------------
# create_tenant
# ---------------------------------------------------------------------------------------------

_new_findings := findings(lib.new_tenant)

# the reasons of the new tenant's findings that carry the code of the rule's annotation
_new_reasons(meta) := {lib.reason(meta, _policy, f.message) | some f in _new_findings; f.code == meta.custom.code}

# METADATA
# title: Tenant exists
# description: A tenant of that name is already in the bundle.
# custom:
#   code: TENANT_EXISTS
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.tenancy"} if {
	lib.tenants[lib.new_tenant.name]
	msg := lib.message([`tenant "`, lib.new_tenant.name, `" already exists`])
	meta := rego.metadata.rule()
}

# METADATA
# title: Contradictory tenant policy
# description: The new tenant document contradicts itself.
# custom:
#   code: TENANT_CONTRADICTION
deny contains r if some r in _new_reasons(rego.metadata.rule())

# METADATA
# title: Unsatisfiable residency
# description: No cluster satisfies the new tenant's residency.
# custom:
#   code: RESIDENCY_UNSATISFIABLE
deny contains r if some r in _new_reasons(rego.metadata.rule())

# METADATA
# title: Unknown GPU class
# description: The new tenant is entitled to a GPU class the fleet does not define.
# custom:
#   code: GPU_CLASS_UNKNOWN
deny contains r if some r in _new_reasons(rego.metadata.rule())

# METADATA
# title: Unsatisfiable entitlement
# description: The new tenant is entitled to a GPU class no cluster of its residency offers.
# custom:
#   code: ENTITLEMENT_UNSATISFIABLE
deny contains r if some r in _new_reasons(rego.metadata.rule())

# METADATA
# title: Namespace conflict
# description: The new tenant claims a namespace another tenant owns.
# custom:
#   code: NAMESPACE_CONFLICT
deny contains r if some r in _new_reasons(rego.metadata.rule())

# METADATA
# title: Dedicated pool provisioning
# description: >-
#   A dedicated tenant with no dedicated pool in the fleet, nor one awaiting it in a cluster of its
#   residency (declared by the operator before the tenant was onboarded), needs one provisioned.
# custom:
#   code: DEDICATED_POOL_PROVISIONING
approval contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.tenancy"} if {
	lib.new_tenant.isolation == "dedicated"
	count(lib.dedicated_pools(lib.new_tenant.name)) == 0
	count(lib.awaiting_classes(lib.new_tenant)) == 0
	msg := lib.message([`dedicated tenant "`, lib.new_tenant.name, `" has no dedicated pool in the fleet; one must be provisioned`])
	meta := rego.metadata.rule()
}

# ---------------------------------------------------------------------------------------------
# update_quotas
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Unsatisfiable quota
# description: A new entitlement names a GPU class no cluster of the tenant's residency offers.
# custom:
#   code: ENTITLEMENT_UNSATISFIABLE
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.tenancy"} if {
	input.kind == "update_quotas"
	offered := lib.offered_classes(lib.tenant)
	some class, _ in lib.payload.entitlements
	lib.gpu_class_known(class)
	not class in offered
	msg := lib.message([`new entitlement of tenant "`, lib.tenant_name, `" for GPU class `, class, " cannot be satisfied: no cluster of its data_residency ", lib.tenant.data_residency, " offers it"])
	meta := rego.metadata.rule()
}

# ---------------------------------------------------------------------------------------------
# change_sla
# ---------------------------------------------------------------------------------------------

# the tenant's policy as the SLA change would leave it
_sla_policy := object.union(lib.tenant, lib.payload) if input.kind == "change_sla"

# METADATA
# title: SLA upgrade
# description: A move to a higher tier raises the priority of every workload and needs approval.
# custom:
#   code: SLA_APPROVAL_REQUIRED
approval contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.tenancy"} if {
	new := _sla_policy
	lib.tiers[new.tier].rank > lib.tiers[lib.tenant.tier].rank
	msg := lib.message([`tenant "`, lib.tenant_name, `" moves from tier `, lib.tenant.tier, " to ", new.tier, ": its priority class rises from ", lib.tiers[lib.tenant.tier].priority_class, " to ", lib.tiers[new.tier].priority_class])
	meta := rego.metadata.rule()
}

# METADATA
# title: Move to dedicated isolation
# description: A move from shared to dedicated isolation reserves whole pools and needs approval.
# custom:
#   code: SLA_APPROVAL_REQUIRED
approval contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.tenancy"} if {
	_sla_policy.isolation == "dedicated"
	lib.tenant.isolation != "dedicated"
	msg := lib.message([`tenant "`, lib.tenant_name, `" moves from `, lib.tenant.isolation, " to dedicated isolation (pools [", lib.names(lib.dedicated_pools(lib.tenant_name)), "])"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Contradictory SLA change
# description: The tenant policy the SLA change would leave contradicts itself.
# custom:
#   code: TENANT_CONTRADICTION
deny contains {"code": meta.custom.code, "message": f.message, "policy": "gpupaas.tenancy"} if {
	some f in _contradictions(_sla_policy)
	meta := rego.metadata.rule()
}

# METADATA
# title: Downgrade above the entitlement
# description: >-
#   A move to a tier that refuses usage above the entitlement (spot) while the tenant's running
#   workloads already hold more GPUs of a class than it is entitled to.
# custom:
#   code: SLA_DOWNGRADE_OVER_ENTITLEMENT
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.tenancy"} if {
	new := _sla_policy
	lib.tiers[new.tier].over_entitlement == "deny"
	some class, used in object.get(input, "usage", {})
	limit := lib.entitlement(new, class)
	used > limit
	msg := lib.message([`tenant "`, lib.tenant_name, `" runs `, used, " ", class, " GPUs, above its entitlement of ", limit, "; tier ", new.tier, " refuses usage above the entitlement"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Isolation unsatisfiable
# description: >-
#   The SLA change moves the tenant to an isolation in which no pool of its residency offers an
#   entitled GPU class (for dedicated isolation: no dedicated pool of the tenant), so its
#   workloads could not be re-placed.
# custom:
#   code: ISOLATION_UNSATISFIABLE
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.tenancy"} if {
	new := _sla_policy
	new.isolation != lib.tenant.isolation
	missing := {class |
		some class in lib.entitled_classes(new)
		count(lib.eligible_pools(new, {class}, lib.usable_strategies(new))) == 0
	}
	count(missing) > 0
	msg := lib.message(["no ", new.isolation, " pool in data_residency ", new.data_residency, ` of tenant "`, lib.tenant_name, `" offers GPU class [`, lib.names(missing), "]"])
	meta := rego.metadata.rule()
}

# ---------------------------------------------------------------------------------------------
# Configuration violations of the bundle data (the build refuses a bundle that has any)
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Tenant document violations
# description: The findings of every tenant document of the bundle.
config_violations contains violation if {
	some name, t in lib.tenants
	some f in findings(t)
	violation := object.union(f, {"document": "tenant", "tenant": name})
}

# METADATA
# title: Pool of unknown GPU class
# description: A pool of the fleet has a GPU class the fleet does not define.
# custom:
#   code: GPU_CLASS_UNKNOWN
config_violations contains _fleet_violation(rego.metadata.rule(), ["fleet", "clusters", c, "pools", p, "gpu_class"], msg) if {
	some c, cluster in lib.clusters
	some p, pool in cluster.pools
	not lib.gpu_class_known(pool.gpu_class)
	msg := lib.message([`pool "`, p, `" of cluster "`, c, `" has GPU class "`, pool.gpu_class, `", which the fleet does not define`])
}

# METADATA
# title: Dedicated pool of unknown tenant
# description: A dedicated pool of the fleet names a tenant that is not in the bundle.
# custom:
#   code: TENANT_UNKNOWN
config_violations contains _fleet_violation(rego.metadata.rule(), ["fleet", "clusters", c, "pools", p, "tenant"], msg) if {
	some c, cluster in lib.clusters
	some p, pool in cluster.pools
	pool.isolation == "dedicated"
	not lib.tenants[pool.tenant]
	msg := lib.message([`dedicated pool "`, p, `" of cluster "`, c, `" names tenant "`, pool.tenant, `", which is not in the bundle`])
}

# METADATA
# title: Node listed twice
# description: >-
#   A node name is listed by more than one pool of the fleet, so admission could not tell which
#   region and pool a workload naming it reaches.
# custom:
#   code: NODE_NAME_CONFLICT
config_violations contains _fleet_violation(rego.metadata.rule(), ["fleet", "clusters", c, "pools", p, "node_names", i], msg) if {
	some name, places in nodes.node_places
	count(places) > 1
	some [c, p] in places
	some i, listed in lib.clusters[c].pools[p].node_names
	listed == name
	msg := lib.message([`node "`, name, `" of pool "`, p, `" of cluster "`, c, `" is also listed by [`, lib.names({lib.message([oc, "/", op]) | some [oc, op] in places; [oc, op] != [c, p]}), "]"])
}

# METADATA
# title: Node names and count disagree
# description: A pool lists node names, but not one per node of its count.
# custom:
#   code: NODE_COUNT_MISMATCH
config_violations contains _fleet_violation(rego.metadata.rule(), ["fleet", "clusters", c, "pools", p, "node_names"], msg) if {
	some c, cluster in lib.clusters
	some p, pool in cluster.pools
	names := pool.node_names
	count(names) != pool.nodes
	msg := lib.message([`pool "`, p, `" of cluster "`, c, `" lists `, count(names), " node names for ", pool.nodes, " nodes"])
}

_fleet_violation(meta, path, msg) := {"document": "fleet", "path": path, "code": meta.custom.code, "message": msg}

# METADATA
# title: Derived tables
# description: >-
#   Tables the bundle build computes from the policies and the data (pdp/bundles/build.py) and
#   stores under data.gpupaas.index, so that a decision reads a result the policies would compute
#   the same way on every query. Nothing here is evaluated by a decision.
package gpupaas.derived

import data.gpupaas.decision
import data.gpupaas.lib

# everything the build stores, each table under data.gpupaas.index.<name>. The constraints tables
# name each constraints document by its place in `constraint_sets`: 1,000 tenants have 8,000
# entries but two dozen distinct documents (4.9 MB of bundle data stored whole).
tables := {
	"constraint_sets": _sets,
	"workload_constraints": {name: {key: _set_index[json.marshal(c)] |
		some key, c in by_key
	} |
		some name, by_key in workload_constraints
	},
	"deploy_constraints": {name: {class: {sharing: _set_index[json.marshal(c)] |
		some sharing, c in by_mode
	} |
		some class, by_mode in by_class
	} |
		some name, by_class in deploy_constraints
	},
}

_sets := sort({c | some by_key in workload_constraints; some c in by_key} | {c |
	some by_class in deploy_constraints
	some by_mode in by_class
	some c in by_mode
})

_set_index := {json.marshal(c): i | some i, c in _sets}

# tenant -> class key -> placement's and isolation's constraints (gpupaas.decision.tenant_constraints)
# of an admit_workload of the tenant whose node selector pins that GPU class ("*": pins none). They
# depend on nothing else of the workload: the tenant's tier, isolation, residency and sharing, and
# the pools of the pinned class (or of every entitled one), so an admission reads them by its
# tenant and pin (gpupaas.decision) instead of computing the eligible clusters, regions, selectors
# and strategies again (docs/performance.md). Keyed by the entitled classes only: an admission
# pinning another class is denied, and computes them. Only tenants that own a namespace have
# admissions.
workload_constraints[name] := _workload_by_profile[_profile(name, t)] if {
	some name, t in lib.tenants
	name in _owners
}

# tenant -> GPU class -> sharing mode -> placement's and isolation's constraints of a deploy_model of
# the tenant naming that class and mode and no cluster: they depend on nothing else of the intent.
# Keyed by the entitled classes and the modes the tenant may use: any other deploy_model is denied,
# and computes them.
deploy_constraints[name] := _deploy_by_profile[_profile(name, t)] if {
	some name, t in lib.tenants
}

# What the constraints read of a tenant. A shared tenant's constraints name neither the tenant nor
# its namespaces, only the rest of its document and the pools dedicated to its name (none unless the fleet
# dedicates one to it): tenants of one profile have the same constraints, evaluated once for all
# (the 1,000 tenants of the benchmark fleet have 6 profiles: the build took 35 s more evaluating
# them tenant by tenant). A dedicated tenant's constraints name it and its pools: it is its own
# profile.
_profile(name, t) := json.marshal([object.remove(t, ["name", "namespaces"]), lib.dedicated_pools(name)]) if {
	t.isolation == "shared"
} else := json.marshal(["tenant", name])

_members[profile] contains name if {
	some name, t in lib.tenants
	profile := _profile(name, t)
}

# the tenants that own a namespace (the first by name where two claim one)
_owners := {name | some name in lib.namespace_tenant}

_workload_by_profile[profile][key] := constraints if {
	some profile, members in _members
	name := min({member | some member in members; member in _owners})
	t := lib.tenants[name]
	ns := [ns | some ns in t.namespaces; lib.namespace_tenant[ns] == name][0]
	some key in _class_keys(t)
	constraints := decision.tenant_constraints with input as _admission(ns, key)
}

_class_keys(t) := {"*"} | {class | some class, _ in t.entitlements; lib.gpu_classes[class]}

_admission(ns, "*") := {"kind": "admit_workload", "admit_workload": {"namespace": ns, "name": "derived"}}

_admission(ns, class) := {"kind": "admit_workload", "admit_workload": {
	"namespace": ns,
	"name": "derived",
	"node_selector": {label.key: label.value},
}} if {
	class != "*"
	label := lib.gpu_classes[class].node_label
}

_deploy_by_profile[profile][class][sharing] := constraints if {
	some profile, members in _members
	name := min(members)
	t := lib.tenants[name]
	some class, _ in t.entitlements
	lib.gpu_classes[class]
	some sharing in lib.usable_strategies(t)
	deploy := {"deployment": "derived", "gpu_class": class, "sharing": sharing}
	constraints := decision.tenant_constraints with input as {"kind": "deploy_model", "tenant": name, "deploy_model": deploy}
}

# METADATA
# title: Shared helpers
# description: >-
#   Data access, the tier catalog, residency, GPU resource classification and the eligible
#   clusters and pools of an intent. Every area package builds on these helpers.
package gpupaas.lib

# ---------------------------------------------------------------------------------------------
# Reasons
# ---------------------------------------------------------------------------------------------

# sorted_reasons orders a set of reasons by code, then message, then policy: Rego orders objects
# with the same keys by their values in key order, and every reason has exactly the keys code,
# message and policy (lib_test holds it to sorting [code, message, policy] triples, which cost a
# denial ~30 allocations more; docs/performance.md, "Fifth pass").
sorted_reasons(reasons) := sort(reasons)

# reason builds the reason object of a deny, approval or warn rule from its METADATA annotation.
# The rules write the same object in their head, `{"code": meta.custom.code, "message": msg,
# "policy": "gpupaas.<area>"}` with `meta := rego.metadata.rule()`: the function call cost each
# reason that fires ~30 allocations, a `_policy` rule ~13 more (docs/performance.md, "Fifth pass").
reason(meta, policy, msg) := {"code": meta.custom.code, "message": msg, "policy": policy}

# message joins the parts of a reason's message: strings as they are, numbers in decimal. Messages
# are built with it rather than sprintf because OPA's WebAssembly compiler leaves sprintf to the
# host (a call back into the PDP's Python per message, ~50 us) while concat, format_int and
# is_string run inside the module (docs/performance.md). Its parts are strings but for counts:
# concat takes them as they are, and only a message with a number (or a value of another type,
# which an unchecked input could carry) goes part by part, so a reason never goes undefined for
# the type of a value it names.
message(parts) := text if {
	text := concat("", parts)
} else := concat("", [_text(part) | some part in parts])

_text(part) := part if is_string(part)

else := format_int(part, 10) if is_number(part)

else := sprintf("%v", [part])

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------

default tenants := {}

tenants := data.gpupaas.tenants

default fleet := {}

fleet := data.gpupaas.fleet

gpu_classes := object.get(fleet, "gpu_classes", {})

clusters := object.get(fleet, "clusters", {})

# the dedicated pools set aside until their tenant is in the bundle, cluster -> pool name -> pool
# (pdp/lifecycle/fleet.py): not among the clusters' pools, so no placement or admission reads them;
# only the onboarding of the tenant a pool waits for does (awaiting_pools)
awaiting := object.get(fleet, "awaiting", {})

# ---------------------------------------------------------------------------------------------
# Tiers and priority classes
# ---------------------------------------------------------------------------------------------

# over_entitlement: what a request above the entitlement gets outside admission control.
# borrows: a tenant of the tier that allows preemption borrows idle cohort capacity beyond its
# entitlement, always preemptible (placement's `_borrows`; Kueue's TIER_RULES in
# pdp/substrate/kueue/objects.py and the living fleet's bench/fleet/mapping.py follow it:
# tests/substrate/kueue/test_objects.py and tests/bench/fleet/test_mapping.py hold them to it).
tiers := {
	"enterprise": {"rank": 3, "priority_class": "gpupaas-enterprise", "over_entitlement": "approval", "borrows": false},
	"standard": {"rank": 2, "priority_class": "gpupaas-standard", "over_entitlement": "approval", "borrows": false},
	"spot": {"rank": 1, "priority_class": "gpupaas-spot", "over_entitlement": "deny", "borrows": true},
}

# {tier.priority_class: tier.rank | some tier in tiers}, written out: a constant rather than a
# comprehension on every decision (lib_test holds the two equal)
priority_class_ranks := {"gpupaas-enterprise": 3, "gpupaas-standard": 2, "gpupaas-spot": 1}

# ---------------------------------------------------------------------------------------------
# Intents and their tenant
# ---------------------------------------------------------------------------------------------

intent_kinds := {
	"create_tenant", "deploy_model", "scale", "change_batch_size", "request_gpu_sharing",
	"update_quotas", "offboard_tenant", "admit_workload", "place_workload", "preempt",
	"change_sla", "change_capacity", "reclaim", "degrade", "sla_breach", "remediate_drift",
}

workload_kinds := {"admit_workload", "place_workload"}

# kinds about the fleet rather than one tenant (infrastructure plans)
fleet_kinds := {"change_capacity", "degrade"}

# kinds whose tenant is named by input.tenant and must exist in the bundle
# (intent_kinds - workload_kinds - {"create_tenant"} - fleet_kinds, written out: a constant rather than
# set arithmetic on every decision; lib_test holds the two equal)
named_tenant_kinds := {
	"deploy_model", "scale", "change_batch_size", "request_gpu_sharing", "update_quotas",
	"offboard_tenant", "preempt", "change_sla", "reclaim", "sla_breach", "remediate_drift",
}

default kind := ""

kind := input.kind

# the payload of the intent, under the key named like its kind (input.kind rather than the kind
# rule: every rule between a reference and the input costs a decision ~10-25 allocations)
default payload := {}

payload := input[input.kind]

# Classes of kinds as rules of one equality on input.kind each: OPA's rule indexer picks the rule
# of the intent's kind in one lookup and the value is computed once per query, where every
# `kind in <set>` of a rule body evaluated the set and the membership again (docs/performance.md).
# lib_test holds them equal to the sets above.

# an admit_workload or place_workload intent (workload_kinds)
is_workload if input.kind == "admit_workload"

is_workload if input.kind == "place_workload"

# an intent naming its tenant by input.tenant (named_tenant_kinds)
names_tenant if input.kind == "deploy_model"

names_tenant if input.kind == "scale"

names_tenant if input.kind == "change_batch_size"

names_tenant if input.kind == "request_gpu_sharing"

names_tenant if input.kind == "update_quotas"

names_tenant if input.kind == "offboard_tenant"

names_tenant if input.kind == "preempt"

names_tenant if input.kind == "change_sla"

names_tenant if input.kind == "reclaim"

names_tenant if input.kind == "sla_breach"
names_tenant if input.kind == "remediate_drift"

# an intent naming the GPU class it asks for (class_kinds)
names_class if input.kind == "deploy_model"

names_class if input.kind == "scale"

names_class if input.kind == "request_gpu_sharing"

# an intent whose decision carries scheduling constraints
schedules if input.kind == "deploy_model"

schedules if input.kind == "scale"

schedules if is_workload

# an intent whose decision lists the eligible clusters (and the isolation constraints)
lists_clusters if schedules

lists_clusters if input.kind == "request_gpu_sharing"

# an intent served by the pools of every entitled class unless it names or pins one
_any_entitled_class if input.kind == "request_gpu_sharing"

_any_entitled_class if is_workload

# an intent served by pools of every sharing strategy the tenant may use
_any_usable_strategy if input.kind == "scale"

_any_usable_strategy if is_workload

# the workload of an admit_workload or place_workload intent (payload and is_workload written
# out: one rule, which OPA's indexer picks by the kind, instead of three)
workload := object.get(input, input.kind, {}) if input.kind in {"admit_workload", "place_workload"}

# namespace -> every tenant that lists it (more than one is a NAMESPACE_CONFLICT). One pass over
# the tenants: the nested comprehension it replaces scanned every tenant for every namespace,
# 4,004,001 evaluations and 10-15 s per workload decision with 1,000 tenants.
namespace_owners[ns] contains name if {
	some name, t in tenants
	some ns in t.namespaces
}

# namespace -> its tenant (the first by name if the data has a conflict). The bundle carries it
# precomputed (pdp/config/index.py); bundles without it compute it here the same way. Here and for
# the other tables of the index, `else` rather than a second rule under `not`: one test of the
# index per query instead of two.
namespace_tenant := data.gpupaas.index.namespaces if {
	data.gpupaas.index.namespaces
} else := _computed_namespace_tenant

_computed_namespace_tenant := {ns: min(owners) | some ns, owners in namespace_owners}

# The intent's tenant by one rule per class of kinds, each read from the input and the bundle's
# index directly: through names_tenant, workload and namespace_tenant it cost every decision
# ~100 allocations (docs/performance.md, "Sixth pass"). The kind sets are names_tenant's and
# is_workload's (lib_test holds them equal).
tenant_name := input.tenant if input.kind in {
	"deploy_model", "scale", "change_batch_size", "request_gpu_sharing", "update_quotas",
	"offboard_tenant", "preempt", "change_sla", "reclaim", "sla_breach", "remediate_drift",
}

tenant_name := name if {
	input.kind in {"admit_workload", "place_workload"}
	name := data.gpupaas.index.namespaces[input[input.kind].namespace]
} else := _computed_namespace_tenant[input[input.kind].namespace] if {
	input.kind in {"admit_workload", "place_workload"}
	not data.gpupaas.index.namespaces
}

# the tenant document a create_tenant intent proposes
new_tenant := payload.policy if input.kind == "create_tenant"

# the tenant of the intent, when the bundle knows it
tenant := data.gpupaas.tenants[tenant_name] # (tenants without its rule: undefined alike without tenants)

usage(class) := object.get(object.get(input, "usage", {}), class, 0)

entitlement(t, class) := object.get(t.entitlements, class, 0)

entitled_classes(t) := {class | some class, _ in t.entitlements}

# ---------------------------------------------------------------------------------------------
# Residency
# ---------------------------------------------------------------------------------------------

jurisdiction_allowed(residency, _) if residency == "any"

jurisdiction_allowed(residency, jurisdiction) if {
	endswith(residency, "-only")
	upper(trim_suffix(residency, "-only")) == jurisdiction
}

# region -> jurisdiction, carried by the bundle (pdp/config/index.py)
region_jurisdiction := data.gpupaas.index.regions if {
	data.gpupaas.index.regions
} else := {c.region: c.jurisdiction | some c in clusters}

region_allowed(t, region) if jurisdiction_allowed(t.data_residency, region_jurisdiction[region])

region_allowed(t, _) if t.data_residency == "any"

# region_allowed(tenant, region) for the intent's tenant, its jurisdiction read once per query
# rather than parsed from data_residency on every call (lib_test holds the two equal)
tenant_region_allowed(_) if tenant.data_residency == "any"

tenant_region_allowed(region) if region_jurisdiction[region] == _tenant_jurisdiction

_tenant_jurisdiction := upper(trim_suffix(tenant.data_residency, "-only")) if endswith(tenant.data_residency, "-only")

residency_clusters(t) := {name | some name, c in clusters; jurisdiction_allowed(t.data_residency, c.jurisdiction)}

# the regions of the fleet's clusters
fleet_regions := {c.region | some c in clusters}

# the regions of the clusters a tenant's residency allows
allowed_regions(t) := {c.region | some c in clusters; jurisdiction_allowed(t.data_residency, c.jurisdiction)}

# ---------------------------------------------------------------------------------------------
# GPU classes, resources and node labels
# ---------------------------------------------------------------------------------------------

gpu_class_known(class) if gpu_classes[class]

vendor_of(class) := gpu_classes[class].vendor

# "<label key>=<label value>" -> GPU class, and the label keys of the GPU classes, carried by the
# bundle (pdp/config/index.py)
class_by_label := data.gpupaas.index.labels if {
	data.gpupaas.index.labels
} else := _computed_class_by_label

_computed_class_by_label := {_label(gc.node_label.key, gc.node_label.value): class | some class, gc in gpu_classes}

class_label_keys := data.gpupaas.index.label_keys if {
	data.gpupaas.index.label_keys
} else := {gc.node_label.key | some gc in gpu_classes}

# GPU feature discovery appends -SHARED to the product when sharing is configured on the node
product_of(value) := trim_suffix(value, "-SHARED")

# the GPU classes a set of node labels (or a node selector) designates
classes_of_labels(labels) := {class |
	some key in class_label_keys
	class := class_by_label[_label(key, product_of(labels[key]))]
}

_label(key, value) := concat("=", [key, value])

whole_gpu_resources := {"nvidia.com/gpu", "amd.com/gpu"}

# whole_gpu_resources, written out: a constant rule costs an evaluation on every admission
is_gpu_resource(resource) if resource in {"nvidia.com/gpu", "amd.com/gpu"}

is_gpu_resource(resource) if is_shared_gpu_resource(resource)

# resources that share a physical GPU: time-slicing/MPS replicas and MIG slices
is_shared_gpu_resource("nvidia.com/gpu.shared")

is_shared_gpu_resource(resource) if startswith(resource, "nvidia.com/mig-")

resource_vendor(resource) := split(resource, ".")[0]

# ---------------------------------------------------------------------------------------------
# Pools and eligible clusters
# ---------------------------------------------------------------------------------------------

sharing_strategies := {"none", "time-slicing", "mps", "mig"}

pool_strategy(pool) := object.get(pool, "sharing_strategy", "none")

# the sharing strategies a tenant may use
default usable_strategies(_) := {"none"}

usable_strategies(t) := sharing_strategies if t.allow_gpu_sharing == true

isolation_compatible(t, pool) if {
	t.isolation == "dedicated"
	pool.isolation == "dedicated"
	pool.tenant == t.name
}

isolation_compatible(t, pool) if {
	t.isolation == "shared"
	pool.isolation == "shared"
}

# [cluster, pool] pairs by GPU class, jurisdiction, isolation and sharing strategy, and the pools
# dedicated to each tenant. The bundle carries them precomputed (pdp/config/index.py), so a
# decision reads the few pools that can serve it instead of scanning the fleet (that scan
# dominated evaluation with 1,250 pools, docs/performance.md); bundles without them (unit tests
# that swap the fleet) compute them here the same way.
pool_index := data.gpupaas.index.pools if {
	data.gpupaas.index.pools
} else := _computed_pool_index

_computed_pool_index[pool.gpu_class][cluster.jurisdiction][pool.isolation][pool_strategy(pool)] contains [c, p] if {
	some c, cluster in clusters
	some p, pool in cluster.pools
}

dedicated_index := data.gpupaas.index.dedicated if {
	data.gpupaas.index.dedicated
} else := _computed_dedicated_index

_computed_dedicated_index[pool.tenant] contains p if {
	some cluster in clusters
	some p, pool in cluster.pools
	pool.isolation == "dedicated"
}

# the jurisdictions of the fleet's clusters, carried by the bundle (pdp/config/index.py)
fleet_jurisdictions := {j | some j in data.gpupaas.index.jurisdictions} if {
	data.gpupaas.index.jurisdictions
} else := {c.jurisdiction | some c in clusters}

# the jurisdictions a tenant's residency allows, among those of the fleet: a lookup, not a scan of
# the clusters for every call (jurisdiction_allowed: "any", or "<jurisdiction>-only")
allowed_jurisdictions(t) := fleet_jurisdictions if {
	t.data_residency == "any"
} else := {upper(trim_suffix(t.data_residency, "-only"))} & fleet_jurisdictions if {
	endswith(t.data_residency, "-only")
} else := set()

# [cluster, pool] pairs a tenant may run the classes on with one of the strategies. The index is
# keyed by isolation, so every pool under a shared tenant's key is one it may use; only a dedicated
# tenant's pools are checked one by one (the pool must be its own). Skipping that per-pool call for
# shared tenants halves a deploy_model decision over a 1,250-pool fleet (docs/performance.md).
eligible_pools(t, classes, strategies) := _indexed_pools(t, classes, strategies) if {
	t.isolation == "shared"
} else := {[c, p] |
	some [c, p] in _indexed_pools(t, classes, strategies)
	isolation_compatible(t, clusters[c].pools[p])
}

_indexed_pools(t, classes, strategies) := {pair |
	some class in classes
	some jurisdiction in allowed_jurisdictions(t)
	some strategy in strategies
	some pair in object.get(pool_index, [class, jurisdiction, t.isolation, strategy], [])
}

# the sharing strategies of the pools a tenant may run the classes on, read from the keys of its
# capacity table
eligible_strategies(t, classes) := {strategy |
	some class in classes
	some jurisdiction in allowed_jurisdictions(t)
	some strategy, by_cluster in object.get(capacity_table(t), [class, jurisdiction], {})
	strategy in sharing_strategies
	count(by_cluster) > 0
}

clusters_of(pools) := {c | some [c, _] in pools}

capacity_of(pools) := sum([pool_gpus[c][p] | some [c, p] in pools])

# GPU class -> jurisdiction -> sharing strategy -> cluster -> GPUs of the cluster's shared pools of
# that key, carried by the bundle (pdp/config/index.py): a shared tenant's clusters and capacity
# read by cluster, where listing and summing its eligible pools one by one cost 212 pools per
# decision at 1,000 tenants (docs/performance.md)
shared_capacity := data.gpupaas.index.shared_capacity if {
	data.gpupaas.index.shared_capacity
} else := _computed_shared_capacity

# one pass over each cluster's pools per GPU class and strategy it has (linear in the fleet,
# tests/test_policy_scale.py)
_computed_shared_capacity[class][jurisdiction][strategy][c] := sum([gpus |
	some pool in cluster.pools
	pool.isolation == "shared"
	pool.gpu_class == class
	pool_strategy(pool) == strategy
	gpus := pool.nodes * pool.gpus_per_node
]) if {
	some c, cluster in clusters
	jurisdiction := cluster.jurisdiction
	some [class, strategy] in {[pool.gpu_class, pool_strategy(pool)] | some pool in cluster.pools; pool.isolation == "shared"}
}

# tenant -> GPU class -> jurisdiction -> sharing strategy -> cluster -> GPUs of the cluster's pools
# dedicated to the tenant, carried by the bundle (pdp/config/index.py): a dedicated tenant's
# clusters and capacity read by cluster like a shared tenant's, where checking every dedicated pool
# of the index against the tenant cost a third of an admission (docs/performance.md)
dedicated_capacity := data.gpupaas.index.dedicated_capacity if {
	data.gpupaas.index.dedicated_capacity
} else := _computed_dedicated_capacity

_computed_dedicated_capacity[tenant][class][jurisdiction][strategy][c] := sum([gpus |
	some pool in cluster.pools
	pool.isolation == "dedicated"
	pool.tenant == tenant
	pool.gpu_class == class
	pool_strategy(pool) == strategy
	gpus := pool.nodes * pool.gpus_per_node
]) if {
	some c, cluster in clusters
	jurisdiction := cluster.jurisdiction
	some [tenant, class, strategy] in {[pool.tenant, pool.gpu_class, pool_strategy(pool)] |
		some pool in cluster.pools
		pool.isolation == "dedicated"
	}
}

# the capacity table of the pools a tenant may use (isolation_compatible): GPU class ->
# jurisdiction -> sharing strategy -> cluster -> GPUs
capacity_table(t) := shared_capacity if {
	t.isolation == "shared"
} else := object.get(dedicated_capacity, t.name, {}) if {
	t.isolation == "dedicated"
} else := {}

# cluster -> pool -> GPUs (nodes x GPUs per node), carried by the bundle (pdp/config/index.py)
pool_gpus := data.gpupaas.index.gpus if {
	data.gpupaas.index.gpus
} else := _computed_pool_gpus

_computed_pool_gpus[c][p] := pool.nodes * pool.gpus_per_node if {
	some c, cluster in clusters
	some p, pool in cluster.pools
}

# the GPU classes the clusters of a tenant's residency offer, in pools of any isolation (dedicated
# pools can be provisioned later)
offered_classes(t) := {class |
	some class, by_jurisdiction in pool_index
	some jurisdiction in allowed_jurisdictions(t)
	by_jurisdiction[jurisdiction]
}

dedicated_pools(name) := {p | some p in object.get(dedicated_index, name, [])}

# [cluster, pool] pairs of the pools awaiting tenant `name`: the pools the
# operator declared for a tenant not onboarded yet, which onboarding it finds (gpupaas.tenancy,
# gpupaas.placement's create_tenant clusters)
awaiting_pools(name) := {[c, p] |
	some c, pools in awaiting
	some p, pool in pools
	pool.tenant == name
}

# the GPU classes of the pools awaiting a tenant in the clusters its residency allows
awaiting_classes(t) := {awaiting[c][p].gpu_class |
	some [c, p] in awaiting_pools(t.name)
	c in residency_clusters(t)
}

# ---------------------------------------------------------------------------------------------
# The GPU request of an intent
# ---------------------------------------------------------------------------------------------

class_kinds := {"deploy_model", "scale", "request_gpu_sharing"}

# the GPU class an intent names (deploy_model, scale, request_gpu_sharing) or a workload pins
requested_class := payload.gpu_class if {
	names_class
} else := pinned_class

# the label key and product the workload's node selector pins: the first GPU class label key it
# names. Written out rather than through product_of and _label: every admission reads it
# (lib_test holds it to those).
pinned_label := [key | some key in class_label_keys; selector[key]][0] if selector := workload.node_selector

pinned_product := trim_suffix(workload.node_selector[pinned_label], "-SHARED")

# the bundle's label index read by the label, rather than through class_by_label: a rule whose
# value is the whole index cost every admission ~19 allocations (docs/performance.md, "Fifth
# pass"); bundles without the index compute it
pinned_class := class if {
	class := data.gpupaas.index.labels[concat("=", [pinned_label, pinned_product])]
} else := _computed_class_by_label[concat("=", [pinned_label, pinned_product])] if {
	not data.gpupaas.index.labels
}

# GPUs the intent adds to the tenant's usage of requested_class
additional_gpus := payload.gpus_per_replica * payload.replicas if input.kind == "deploy_model"

additional_gpus := (payload.target_replicas - payload.current_replicas) * payload.gpus_per_replica if input.kind == "scale"

# the sharing mode asked for (deploy_model, request_gpu_sharing)
requested_sharing := object.get(payload, "sharing", "none") if input.kind == "deploy_model"

requested_sharing := payload.mode if input.kind == "request_gpu_sharing"

# the classes whose pools can serve the intent
intent_classes := {requested_class}

intent_classes := entitled_classes(tenant) if {
	_any_entitled_class
	not requested_class
}

# the sharing strategies of the pools that can serve the intent
intent_strategies := {requested_sharing}

intent_strategies := usable_strategies(tenant) if _any_usable_strategy

intent_pools := eligible_pools(tenant, intent_classes, intent_strategies)

# [cluster, GPUs] of the pools that can serve the intent, one entry per cluster and key of the
# tenant's capacity table (a pool has one key, so no pool counts twice)
_entries := [[c, gpus] |
	some class in intent_classes
	some jurisdiction in allowed_jurisdictions(tenant)
	some strategy in intent_strategies
	some c, gpus in object.get(table, [class, jurisdiction, strategy], {})
] if {
	table := capacity_table(tenant)
	intent_classes
	intent_strategies
}

# the clusters of the pools that can serve the intent (undefined without a tenant, like the entries)
intent_clusters := {c | some [c, _] in entries} if entries := _entries

# the clusters the intent may run on; an explicit deploy_model cluster narrows them to itself
target_clusters := intent_clusters & {payload.cluster} if payload.cluster

target_clusters := intent_clusters if not payload.cluster

# the GPUs of the target pools
target_capacity := sum([gpus | some [c, gpus] in entries; c in target_clusters]) if entries := _entries

# the target pools themselves (named by a CAPACITY_EXCEEDED message)
target_pools := {[c, p] | some [c, p] in intent_pools; c == payload.cluster} if payload.cluster

target_pools := intent_pools if not payload.cluster

# the regions of the target clusters, for the node affinity of residency-restricted tenants
target_regions := {clusters[c].region | some c in target_clusters}

# the intent asks for a sharing mode the tenant forbids
sharing_forbidden if {
	requested_sharing != "none"
	tenant.allow_gpu_sharing != true
}

# the intent asks for a sharing mode the tenant allows but no eligible pool offers
sharing_unavailable if {
	requested_sharing != "none"
	tenant.allow_gpu_sharing == true
	count(intent_clusters) == 0
}

# how messages name the object of the intent. A workload's namespace and name are strings unless
# the input is malformed: concat first, without message's call (most denials name a workload),
# then message, which writes a value of another type.
subject := text if {
	# a workload without a deployment field (every workload the schema admits) read from the
	# input without the payload and workload rules, the chain below otherwise (-20 allocations
	# per denial of a workload; lib_test holds the two alike)
	input.kind in {"admit_workload", "place_workload"}
	w := input[input.kind]
	not w.deployment
	text := concat("", [`workload "`, w.namespace, "/", w.name, `"`])
} else := _subject

_subject := message([`deployment "`, payload.deployment, `"`]) if payload.deployment

else := text if {
	text := concat("", [`workload "`, workload.namespace, "/", workload.name, `"`])
} else := message([`workload "`, workload.namespace, "/", workload.name, `"`]) if workload

else := message(["the ", kind, " intent"])

# ---------------------------------------------------------------------------------------------
# Workload resources
# ---------------------------------------------------------------------------------------------

resources := object.get(workload, "resources", {})

# GPU resources the workload asks for (count > 0)
gpu_resources := {r | some r, n in resources; n > 0; is_gpu_resource(r)}

requested_vendors := {split(r, ".")[0] | some r in gpu_resources} # resource_vendor(r), without a call per resource

# sharing (time-slicing/MPS replicas) or MIG resources the workload asks for
# (every GPU resource is a whole GPU or a shared one: the set difference, without a call per
# resource; lib_test holds it to is_shared_gpu_resource)
shared_gpu_resources := gpu_resources - {"nvidia.com/gpu", "amd.com/gpu"}

# the workload asks for GPUs: GPU resources, or device claims (Dynamic Resource Allocation) whose
# devices the workload does not show, so unknown is taken as GPU
asks_for_gpus if count(gpu_resources) > 0

asks_for_gpus if count(resource_claims) > 0

resource_claims := object.get(workload, "resource_claims", [])

# ---------------------------------------------------------------------------------------------
# Nodes and labels
# ---------------------------------------------------------------------------------------------

# The node labels and taint the policies read are written out where they are read, not as rules
# here: OPA evaluates a constant rule like any other, and the five of them cost a workload
# admission ~80 allocations of its ~1,600 (docs/performance.md, "Fourth pass"). They are:
#   topology.kubernetes.io/region   the node's region
#   gpupaas.io/dedicated-tenant     the tenant of a dedicated pool's nodes
#   kubernetes.io/hostname          the node's name
#   gpupaas.io/pool                 the node's pool
#   gpupaas.io/dedicated            the taint of dedicated pools (gpupaas.io/dedicated=<tenant>:NoSchedule)
# pdp/substrate/labels.py names the same for the substrates. Of a candidate node's labels a
# rule reads only those in node_label_keys below (node_labels filters them).

# the candidate nodes of a place_workload intent
candidate_nodes := object.get(payload, "nodes", []) if input.kind == "place_workload"

# The node label keys the policies may read: node_labels keeps only these, so no rule can read
# another, and place_workload decisions report them (placement's constraints.node_label_keys). The
# scheduler extender asks once for nodes that differ only in labels outside this set (their
# kubernetes.io/hostname, zone, instance ids...) and checks the decision's set against the keys it
# kept (pdp/substrate/kubernetes/enforcement/shapes.py). A rule that needs another node label adds its key here.
node_label_keys := {
	"topology.kubernetes.io/region",
	"gpupaas.io/dedicated-tenant",
	"nvidia.com/gpu.sharing-strategy",
	"nvidia.com/gpu.replicas",
	"nvidia.com/mig.strategy",
} | {key | some key in class_label_keys}

node_labels(node) := object.filter(object.get(node, "labels", {}), node_label_keys)

# GPUs a map of resources stands for on a node with these labels: whole GPUs, and time-slicing or
# MPS replicas as the share of a GPU that GPU feature discovery's replicas label gives (a node
# without that label counts a replica as a whole GPU, never less than is held). MIG slices are
# not counted: their size is in the resource name, not on the node.
node_gpus(resources, labels) := (object.get(resources, "nvidia.com/gpu", 0) + object.get(resources, "amd.com/gpu", 0)) + (object.get(resources, "nvidia.com/gpu.shared", 0) / gpu_replicas(labels))

gpu_replicas(labels) := n if {
	n := to_number(labels["nvidia.com/gpu.replicas"])
	n >= 1
} else := 1

# the tenants with pods on a node: named directly, or through the namespaces of its pods
# (namespaces no tenant owns, such as kube-system, name no tenant)
node_tenants(node) := {t | some t in object.get(node, "tenants", [])} | {namespace_tenant[ns] |
	some ns in object.get(node, "namespaces", [])
	namespace_tenant[ns]
}

# names renders a set or array of strings for a message: sorted, comma-separated. A value of
# another type (an input value no schema checked, such as a number among a node affinity's
# regions) is written as message writes it, so the reason naming it is not undefined: that turned
# a denial into an allow.
names(xs) := text if {
	text := concat(", ", sort(xs))
} else := concat(", ", sort([_text(x) | some x in xs]))

# Dynamic Resource Allocation claims (ResourceClaim, ResourceClaimTemplate): the webhook sends the
# GPU devices they ask for as resources; they place nothing (the pods that use them do). The kinds
# are written out: a constant rule costs an evaluation on every admission.
places_pods if not object.get(workload, "kind", "") in {"ResourceClaim", "ResourceClaimTemplate"}

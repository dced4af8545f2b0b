# METADATA
# title: Degradation
# description: >-
#   Which running deployments of a GPU class give up GPUs when its capacity shrinks (a node lost
#   to an incident) or falls short (a deployment that cannot be placed): spot preempted first,
#   then standard scaled toward its minimum; enterprise kept, never below its entitlement without
#   its consent; only tiers below the one the room is made for. The decision's
#   constraints.degradation is the ordered plan, with where each degraded deployment may move
#   (its residency and isolation); its warnings are the notices. Used by capacity exhaustion and
#   by incident response alike (pdp/lifecycle/services/degradation.py).
package gpupaas.degradation

import data.gpupaas.lib

# what a degradation does to a deployment of each tier: spot is preempted (queued, to resume when
# capacity returns), standard is scaled to its min_replicas (none declared: preempted), enterprise
# keeps its entitlement (all of it, but what it holds above its entitlement, unless it consents)
tier_actions := {
	"spot": "preempt",
	"standard": "scale_to_minimum",
	"enterprise": "keep_entitlement",
}

_request := lib.payload if input.kind == "degrade"

_class := _request.gpu_class

_short := object.get(_request, "short_gpus", 0)

# where the capacity is short; "" is everywhere
_cluster := object.get(_request, "cluster", "")

_region := object.get(_request, "region", "")

# the tier the room is made for: only lower tiers give it ("" is every tier)
_for_tier := object.get(_request, "for_tier", "")

_deployments := object.get(_request, "deployments", [])

_replicas(d) := object.get(d, "replicas", 0)

_gpus(d) := _replicas(d) * d.gpus_per_replica

_minimum(d) := min([_replicas(d), object.get(d, "min_replicas", 0)])

_affected(d) := object.get(d, "affected", false)

# the tenants of the input's deployments: per-tenant values are computed once per name, not once
# per deployment (with 1,000 deployments of 3 tenants that was 1,000 sums of 1,000 terms)
_tenant_names := {d.tenant | some d in _deployments}

# GPUs of the class each tenant holds, over the deployments of the plan's input
_held[tenant] := sum([_gpus(d) | some d in _deployments; d.tenant == tenant]) if {
	some tenant in _tenant_names
}

# the replicas a deployment keeps so its tenant holds its entitlement: none with its consent
# (allow_preemption: it accepted that its GPUs are taken back)
_protected(t, _) := 0 if t.allow_preemption == true

_protected(t, d) := min([_replicas(d), max([0, ceil((lib.entitlement(t, _class) - (_held[d.tenant] - _gpus(d))) / d.gpus_per_replica)])]) if {
	t.allow_preemption != true
}

_tier_target(t, _) := 0 if tier_actions[t.tier] == "preempt"

_tier_target(t, d) := _minimum(d) if tier_actions[t.tier] == "scale_to_minimum"

_tier_target(t, d) := max([_minimum(d), _protected(t, d)]) if tier_actions[t.tier] == "keep_entitlement"

_in_scope(d) if {
	_cluster_ok(d)
	_region_ok(d)
}

_cluster_ok(_) if _cluster == ""

_cluster_ok(d) if object.get(d, "cluster", "") == _cluster

_region_ok(_) if _region == ""

_region_ok(d) if lib.clusters[object.get(d, "cluster", "")].region == _region

_below(_) if _for_tier == ""

_below(t) if lib.tiers[t.tier].rank < lib.tiers[_for_tier].rank

# the clusters a deployment of the tenant may move to: its residency and isolation allow them for
# the class (unshared pools), the short cluster left out
_may_move_to(t) := sort([c |
	some c in lib.clusters_of(lib.eligible_pools(t, {_class}, {"none"}))
	c != _cluster
])

# once per tenant of the input, not per deployment
_clusters_for[name] := _may_move_to(t) if {
	some name in _tenant_names
	t := lib.tenants[name]
}

# every deployment of the plan's input that may give GPUs, with what it gives
_candidates[i] := {
	"tenant": d.tenant,
	"deployment": d.deployment,
	"tier": t.tier,
	"action": _action(target),
	"from_replicas": _replicas(d),
	"to_replicas": target,
	"release_gpus": release,
	"affected": _affected(d),
	"may_move_to": _clusters_for[d.tenant],
} if {
	some i, d in _deployments
	t := lib.tenants[d.tenant]
	_in_scope(d)
	_below(t)
	target := _tier_target(t, d)
	release := (_replicas(d) - target) * d.gpus_per_replica
	release > 0
}

_action(0) := "preempt"

_action(target) := "scale" if target > 0

# the order they give in: lowest tier first (spot), then those the fault already took down, then
# the largest, then by tenant and name (deterministic)
_ranked := [_candidates[key[5]] |
	some key in sort([[lib.tiers[c.tier].rank, _untouched(c.affected), 0 - c.release_gpus, c.tenant, c.deployment, i] |
		some i, c in _candidates
	])
]

_untouched(true) := 0

_untouched(false) := 1

_releases := [c.release_gpus | some c in _ranked]

# the shortest prefix of the order that frees the GPUs short: a step is taken while what the steps
# before it free is still short. Every candidate releases at least one GPU, so no more than
# `_short` steps are ever taken: only those positions are summed (each over a native slice; the
# comprehension of every position it replaces evaluated n^2/2 terms, docs/operations.md)
_steps := [object.union(c, {"order": j + 1}) |
	some j, c in _ranked
	j < _short
	sum(array.slice(_releases, 0, j)) < _short
]

_freed := sum([s.release_gpus | some s in _steps])

_taken := {[s.tenant, s.deployment] | some s in _steps}

# the deployments of the scope the plan leaves as they are, and why: a tier not below the one the
# room is for, nothing its tier lets go (at its minimum, or within its entitlement), or not needed
_kept := [{
	"tenant": d.tenant,
	"deployment": d.deployment,
	"tier": t.tier,
	"replicas": _replicas(d),
	"why": _why_kept(i, t),
} |
	some i, d in _deployments
	t := lib.tenants[d.tenant]
	_in_scope(d)
	not [d.tenant, d.deployment] in _taken
]

_why_kept(i, t) := "tier" if {
	not _below(t)
} else := "not_needed" if {
	_candidates[i]
} else := "minimum"

# the deployments the fault took down, to be re-placed in this order (those the plan preempts are
# left out by the caller once the preemption is allowed): the highest tier first, then by tenant
# and name
_replace_order := [entry |
	some key in sort([[0 - lib.tiers[t.tier].rank, d.tenant, d.deployment, i] |
		some i, d in _deployments
		_affected(d)
		t := lib.tenants[d.tenant]
	])
	d := _deployments[key[3]]
	t := lib.tenants[d.tenant]
	entry := {"tenant": d.tenant, "deployment": d.deployment, "tier": t.tier, "may_move_to": _clusters_for[d.tenant]}
]

constraints["degradation"] := {
	"gpu_class": _class,
	"short_gpus": _short,
	"freed_gpus": _freed,
	"sufficient": _freed >= _short,
	"steps": _steps,
	"kept": _kept,
	"replace_order": _replace_order,
} if {
	input.kind == "degrade"
	count(deny) == 0
}

# ---------------------------------------------------------------------------------------------
# Denials
# ---------------------------------------------------------------------------------------------

# METADATA
# title: Unknown GPU class
# description: The class whose capacity is short is not in the fleet.
# custom:
#   code: DEGRADE_CLASS_UNKNOWN
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.degradation"} if {
	input.kind == "degrade"
	not lib.gpu_class_known(_class)
	msg := lib.message([`degradation of GPU class "`, _class, `": the fleet has no such class (known: [`, lib.names(object.keys(lib.gpu_classes)), "])"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Unknown cluster
# description: The cluster whose capacity is short is not in the fleet.
# custom:
#   code: DEGRADE_CLUSTER_UNKNOWN
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.degradation"} if {
	input.kind == "degrade"
	_cluster != ""
	not lib.clusters[_cluster]
	msg := lib.message([`degradation of `, _class, ` in cluster "`, _cluster, `": the fleet has no such cluster`])
	meta := rego.metadata.rule()
}

# METADATA
# title: Unknown tenant of a deployment
# description: A running deployment of the plan's input belongs to a tenant not in the bundle.
# custom:
#   code: DEGRADE_TENANT_UNKNOWN
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.degradation"} if {
	input.kind == "degrade"
	some d in _deployments
	not lib.tenants[d.tenant]
	msg := lib.message([`deployment "`, d.deployment, `" of tenant "`, d.tenant, `": the tenant is not in the bundle, so its tier is unknown`])
	meta := rego.metadata.rule()
}

# ---------------------------------------------------------------------------------------------
# The notices (warnings of the decision)
# ---------------------------------------------------------------------------------------------

_scope := lib.message([" in cluster ", _cluster]) if {
	_cluster != ""
} else := lib.message([" in region ", _region]) if {
	_region != ""
} else := ""

_for := lib.message([" (room for tier ", _for_tier, ")"]) if {
	_for_tier != ""
} else := ""

_moves(s) := lib.message(["; it may run again in [", concat(", ", s.may_move_to), "] (its residency and isolation allow them)"]) if {
	count(s.may_move_to) > 0
} else := "; no other cluster its residency and isolation allow has this class: it waits for capacity here"

# METADATA
# title: Preempted
# description: >-
#   A deployment is preempted (spot, or standard without a minimum): stopped and queued, to resume
#   when capacity returns.
# custom:
#   code: DEGRADE_PREEMPT
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.degradation"} if {
	some s in _steps
	s.action == "preempt"
	msg := lib.message([`step `, s.order, `: deployment "`, s.deployment, `" of tenant "`, s.tenant, `" (tier `, s.tier, ") preempted, ", s.from_replicas, " -> 0 replicas, releasing ", s.release_gpus, " ", _class, " GPUs", _scope, _moves(s)])
	meta := rego.metadata.rule()
}

# METADATA
# title: Scaled toward its minimum
# description: A deployment is scaled down toward its min_replicas (standard) or its entitlement.
# custom:
#   code: DEGRADE_SCALE
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.degradation"} if {
	some s in _steps
	s.action == "scale"
	msg := lib.message([`step `, s.order, `: deployment "`, s.deployment, `" of tenant "`, s.tenant, `" (tier `, s.tier, ") scaled from ", s.from_replicas, " to ", s.to_replicas, " replicas, releasing ", s.release_gpus, " ", _class, " GPUs", _scope])
	meta := rego.metadata.rule()
}

# METADATA
# title: Entitlement kept
# description: >-
#   An enterprise deployment keeps the replicas that hold its tenant's entitlement: it has not
#   consented to go below it.
# custom:
#   code: DEGRADE_ENTITLEMENT_KEPT
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.degradation"} if {
	input.kind == "degrade"
	some d in _deployments
	t := lib.tenants[d.tenant]
	tier_actions[t.tier] == "keep_entitlement"
	_in_scope(d)
	_below(t)
	protected := _protected(t, d)
	protected > _minimum(d)
	msg := lib.message([`deployment "`, d.deployment, `" of tenant "`, d.tenant, `" (tier `, t.tier, ") kept at ", protected, " of ", _replicas(d), " replicas: fewer would leave it below its entitlement of ", lib.entitlement(t, _class), " ", _class, " GPUs, and it has not consented"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Capacity still short
# description: >-
#   Every deployment the policy lets give GPUs together frees less than the capacity short: the
#   rest waits (queued) or is not re-placed.
# custom:
#   code: DEGRADE_SHORT
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.degradation"} if {
	input.kind == "degrade"
	count(deny) == 0
	_freed < _short
	msg := lib.message(["the plan frees ", _freed, " of the ", _short, " ", _class, " GPUs short", _scope, _for, "; ", count(_kept), " deployments kept (tier not below, at their minimum or within their entitlement)"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Reclaim
# description: >-
#   What is done with GPUs a deployment holds idle (pdp waste): by the tenant's tier, spot is
#   reclaimed after a short grace, standard is notified then scaled to its minimum, enterprise is
#   notified only; never below the tenant's entitlement without its consent. The decision's
#   constraints.reclaim says what to do (action, grace seconds, target replicas); its warnings are
#   the notice sent to the tenant.
package gpupaas.reclaim

import data.gpupaas.lib

# per tier: the action on idle GPUs, and the grace between the notice and the action (the fleet's
# reclaim.<tier>.grace_seconds overrides it)
tier_terms := {
	"spot": {"action": "reclaim", "grace_seconds": 300},
	"standard": {"action": "scale_to_minimum", "grace_seconds": 3600},
	"enterprise": {"action": "notify", "grace_seconds": 0},
}

_tier := lib.tenant.tier if input.kind == "reclaim"

_terms := tier_terms[_tier]

_grace := object.get(lib.fleet, ["reclaim", _tier, "grace_seconds"], _terms.grace_seconds)

_class := lib.payload.gpu_class

_per_replica := lib.payload.gpus_per_replica

_current := lib.payload.current_replicas

_idle_gpus := lib.payload.idle_gpus

# whole replicas whose GPUs are idle: only those can be taken without stopping work
_idle_replicas := min([_current, floor(_idle_gpus / _per_replica)])

_minimum := min([_current, object.get(lib.payload, "min_replicas", 1)])

# the replicas the tier keeps: the busy ones (spot), at least its minimum (standard), all
# (enterprise)
_tier_target := _current - _idle_replicas if _terms.action == "reclaim"

_tier_target := max([_minimum, _current - _idle_replicas]) if _terms.action == "scale_to_minimum"

_tier_target := _current if _terms.action == "notify"

# the tenant consented to go below its entitlement: for this reclaim (the intent says so), or for
# good (allow_preemption: it accepted that its GPUs are taken back)
_consent if lib.payload.consent == true

_consent if lib.tenant.allow_preemption == true

_entitlement := lib.entitlement(lib.tenant, _class)

# GPUs of the class the tenant holds outside this deployment
_elsewhere := max([0, lib.usage(_class) - (_current * _per_replica)])

# the replicas the deployment keeps so the tenant holds its entitlement (none with its consent)
_protected := 0 if {
	_consent
} else := min([_current, max([0, ceil((_entitlement - _elsewhere) / _per_replica)])])

_target := max([_tier_target, _protected])

_action := _terms.action if {
	_target < _current
} else := "notify"

constraints["reclaim"] := {
	"action": _action,
	"grace_seconds": _grace,
	"target_replicas": _target,
	"release_gpus": (_current - _target) * _per_replica,
	"protected_replicas": _protected,
} if {
	not _not_idle
}

# ---------------------------------------------------------------------------------------------
# Denials
# ---------------------------------------------------------------------------------------------

_not_idle if _idle_replicas == 0

# METADATA
# title: Nothing idle to reclaim
# description: The deployment holds no whole replica of idle GPUs, so there is nothing to reclaim.
# custom:
#   code: RECLAIM_NOT_IDLE
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.reclaim"} if {
	_not_idle
	msg := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `" holds `, _idle_gpus, " idle ", _class, " GPUs of ", _current * _per_replica, ", less than one replica of ", _per_replica, ": nothing to reclaim"])
	meta := rego.metadata.rule()
}

# ---------------------------------------------------------------------------------------------
# The notice (warnings of the decision)
# ---------------------------------------------------------------------------------------------

_idle_part := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `" (tier `, _tier, ") holds ", _idle_gpus, " idle ", _class, " GPUs"])

# METADATA
# title: Spot GPUs reclaimed
# description: A spot deployment's idle replicas are reclaimed once the grace has passed.
# custom:
#   code: RECLAIM_SPOT
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.reclaim"} if {
	_action == "reclaim"
	msg := lib.message([_idle_part, "; scaled from ", _current, " to ", _target, " replicas after a grace of ", _grace, " s unless they are put to work"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Standard deployment scaled to its minimum
# description: A standard deployment is notified, then scaled to its minimum once the grace has passed.
# custom:
#   code: RECLAIM_TO_MINIMUM
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.reclaim"} if {
	_action == "scale_to_minimum"
	msg := lib.message([_idle_part, "; scaled from ", _current, " to its minimum of ", _target, " replicas after a grace of ", _grace, " s unless they are put to work"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Enterprise notified only
# description: An enterprise deployment's idle GPUs are reported to the tenant, never taken.
# custom:
#   code: RECLAIM_NOTIFY_ONLY
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.reclaim"} if {
	_terms.action == "notify"
	not _not_idle
	msg := lib.message([_idle_part, "; tier enterprise is notified only, no GPU is taken"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Entitlement kept
# description: >-
#   Reclaiming what the tier allows would leave the tenant below its entitlement, and it has not
#   consented: the deployment keeps the replicas that hold the entitlement.
# custom:
#   code: RECLAIM_ENTITLEMENT_KEPT
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.reclaim"} if {
	_terms.action != "notify"
	_protected > _tier_target
	msg := lib.message([_idle_part, "; kept at ", _target, " replicas: fewer would leave it below its entitlement of ", _entitlement, " ", _class, " GPUs (", _elsewhere, " held elsewhere), and it has not consented"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Drift remediation
# description: >-
#   What is done with a running GPU workload the current revision would refuse or place on another
#   node (a cluster drift finding, pdp audit-cluster): by the tenant's tier, after a notice and a
#   grace, spot and standard workloads are re-placed where the policy allows them; one that can be
#   placed nowhere is evicted (spot) or scaled to zero (standard, a lifecycle deployment); an
#   enterprise workload is notified only, unless an admin approved the remediation. The
#   decision's constraints.drift says what to do (action, grace seconds); its warnings are the
#   notice sent to the tenant.
package gpupaas.drift

import data.gpupaas.lib

# per tier: the action when the workload can be placed nowhere the policy allows, the grace between
# the notice and the action (the fleet's drift.<tier>.grace_seconds overrides it), and whether an
# admin must approve any action at all
tier_terms := {
	"spot": {"unplaceable": "evict", "grace_seconds": 300, "needs_approval": false},
	"standard": {"unplaceable": "scale_to_zero", "grace_seconds": 3600, "needs_approval": false},
	"enterprise": {"unplaceable": "notify", "grace_seconds": 86400, "needs_approval": true},
}

_tier := lib.tenant.tier if input.kind == "remediate_drift"

_terms := tier_terms[_tier]

_grace := object.get(lib.fleet, ["drift", _tier, "grace_seconds"], _terms.grace_seconds)

_approved if lib.payload.approved == true

_held if {
	_terms.needs_approval
	not _approved
}

_managed if lib.payload.deployment

# the tier's action when nothing else is possible; scaling to zero needs a deployment the
# lifecycle manages, any other pod is evicted (its controller's next pod is decided anew)
_fallback := "evict" if {
	_terms.unplaceable == "scale_to_zero"
	not _managed
} else := _terms.unplaceable

_action := "notify" if {
	_held
} else := "replace" if {
	lib.payload.replaceable == true
} else := _fallback

constraints["drift"] := {"action": _action, "grace_seconds": _grace} if _tier

# ---------------------------------------------------------------------------------------------
# The notice (warnings of the decision)
# ---------------------------------------------------------------------------------------------

_what := lib.message([`pod "`, lib.payload.namespace, "/", lib.payload.pod, `" on node "`, lib.payload.node, `" of tenant "`, lib.tenant_name, `" (tier `, _tier, ") is ", lib.payload.finding, " by the current policy"])

# METADATA
# title: Drifted workload re-placed
# description: >-
#   The workload is moved where the current revision places it (a fresh placement decision,
#   then its pod evicted so the scheduler places the next one by the policy) once the grace has passed.
# custom:
#   code: DRIFT_REPLACE
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.drift"} if {
	_action == "replace"
	msg := lib.message([_what, "; re-placed where the policy allows it after a grace of ", _grace, " s unless the finding clears"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Drifted workload evicted
# description: No node the policy allows can take the spot workload; its pod is evicted once the grace has passed.
# custom:
#   code: DRIFT_EVICT
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.drift"} if {
	_action == "evict"
	msg := lib.message([_what, "; no allowed placement: evicted after a grace of ", _grace, " s unless the finding clears"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Drifted deployment scaled to zero
# description: >-
#   No node the policy allows can take the standard deployment; it is scaled to zero replicas
#   (its object and placement kept) once the grace has passed.
# custom:
#   code: DRIFT_SCALE_TO_ZERO
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.drift"} if {
	_action == "scale_to_zero"
	msg := lib.message([_what, "; no allowed placement: deployment \"", lib.payload.deployment, "\" scaled to zero after a grace of ", _grace, " s unless the finding clears"])
	meta := rego.metadata.rule()
}

# METADATA
# title: Enterprise notified only
# description: >-
#   An enterprise workload is reported to the tenant, never moved or stopped, unless an admin
#   approved the remediation.
# custom:
#   code: DRIFT_NOTIFY_ONLY
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.drift"} if {
	_action == "notify"
	msg := lib.message([_what, "; tier ", _tier, " is notified only", _notify_why])
	meta := rego.metadata.rule()
}

_notify_why := " until an admin approves its remediation" if _held

_notify_why := ": no placement the policy allows" if not _held

# METADATA
# title: Remediation approved by an admin
# description: An admin approved acting on a workload of a tier that is otherwise notified only.
# custom:
#   code: DRIFT_APPROVED
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.drift"} if {
	_terms.needs_approval
	_approved
	msg := lib.message([_what, "; an admin approved its remediation (", _action, ")"])
	meta := rego.metadata.rule()
}

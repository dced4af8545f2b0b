# METADATA
# title: SLA breach
# description: >-
#   What is done when a deployment burns its SLA's error budget (pdp sla: p99 latency or
#   availability measured from the model servers' metrics, a multi-window burn-rate alert firing).
#   By the tenant's tier: enterprise is re-placed onto better capacity (a pool of its own, or a
#   less loaded pool it may use, within its residency and isolation); without such a pool, and for
#   standard, the tenant is notified and an SLA credit is recorded; spot (best effort) is notified
#   only. The decision's constraints.sla_escalation says what to do; its warnings are the notice.
package gpupaas.sla_breach

import data.gpupaas.lib

# per tier: whether a breach may move the deployment, and the credit (percent of the
# deployment's monthly charge) per alert severity when it is not moved
tier_terms := {
	"enterprise": {"replace": true, "credit_percent": {"fast": 10, "slow": 5}},
	"standard": {"replace": false, "credit_percent": {"fast": 5, "slow": 2}},
	"spot": {"replace": false, "credit_percent": {"fast": 0, "slow": 0}},
}

_tier := lib.tenant.tier if input.kind == "sla_breach"

_terms := tier_terms[_tier]

_objective := lib.payload.objective

_sla := object.get(lib.tenant, "sla", {})

_current := {p | some p in object.get(lib.payload, "current_pools", [])}

_load(pool) := object.get(object.get(lib.payload, "pool_load", {}), pool, 0)

# the load of where the deployment runs now (its most loaded pool); unknown: fully loaded
_current_load := max([_load(p) | some p in _current]) if count(_current) > 0

else := 1

# pools the tenant may run on: its class, a cluster its residency allows, its own dedicated pools
# (a dedicated tenant) or the shared ones (a shared tenant)
_usable[pool] := spec if {
	some cluster in lib.residency_clusters(lib.tenant)
	some pool, spec in object.get(lib.clusters[cluster], "pools", {})
	spec.gpu_class == lib.payload.gpu_class
	_isolation_allows(spec, pool)
}

_isolation_allows(spec, _) if {
	lib.tenant.isolation == "shared"
	spec.isolation == "shared"
}

_isolation_allows(spec, _) if {
	spec.isolation == "dedicated"
	spec.tenant == lib.tenant_name
}

# better capacity: a usable pool it is not on, less loaded than where it is
_candidates := [[_load(pool), pool] |
	some pool, _ in _usable
	not pool in _current
	_load(pool) < _current_load
]

_target := sort(_candidates)[0][1]

_moves if {
	_terms.replace
	_target
}

_target_pool := _target if {
	_moves
} else := ""

_action := "replace" if {
	_moves
} else := "notify" if {
	_terms.credit_percent[lib.payload.severity] == 0
} else := "credit"

_credit := 0 if {
	_moves
} else := _terms.credit_percent[lib.payload.severity]

constraints["sla_escalation"] := {
	"action": _action,
	"target_pool": _target_pool,
	"from_pools": sort([p | some p in _current]),
	"credit_percent": _credit,
	# the credit recorded if a move (action "replace") does not happen after all
	"fallback_credit_percent": _terms.credit_percent[lib.payload.severity],
} if {
	not _no_objective
}

# ---------------------------------------------------------------------------------------------
# Denials
# ---------------------------------------------------------------------------------------------

_objective_keys := {"latency": "latency_p99_ms", "availability": "availability"}

_no_objective if not _sla[_objective_keys[_objective]]

# METADATA
# title: No such objective in the SLA
# description: The tenant's SLA sets no objective of the kind breached, so there is nothing to escalate.
# custom:
#   code: SLA_NO_OBJECTIVE
deny contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.sla_breach"} if {
	_no_objective
	msg := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `": its SLA (class `, object.get(_sla, "class", "none"), ") sets no ", _objective, " objective, nothing to escalate"])
	meta := rego.metadata.rule()
}

# ---------------------------------------------------------------------------------------------
# The notice (warnings of the decision)
# ---------------------------------------------------------------------------------------------

# numbers as measured (lib.message writes integers only)
_num(x) := format_int(x, 10) if {
	x == floor(x)
} else := sprintf("%v", [x])

_measure(name) := _num(lib.payload.measured[name]) if {
	is_number(lib.payload.measured[name])
} else := "unknown"

_measured := concat("", ["p99 ", _measure("p99_ms"), " ms against ", _num(_sla.latency_p99_ms), " ms"]) if {
	_objective == "latency"
} else := concat("", ["availability ", _measure("availability"), "% against ", _num(_sla.availability), "%"])

_breach := lib.message([lib.subject, ` of tenant "`, lib.tenant_name, `" (tier `, _tier, ") breaches its ", _objective, " SLA: ", _measured, ", the error budget burning at ", _num(lib.payload.burn_rate), "x (", lib.payload.severity, " alert)"])

# METADATA
# title: Re-placed onto better capacity
# description: An enterprise deployment breaching its SLA is moved onto a less loaded pool it may use.
# custom:
#   code: SLA_REPLACED
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.sla_breach"} if {
	_action == "replace"
	msg := lib.message([_breach, "; re-placed from ", _from, " onto pool ", _target, " (load ", _num(_load(_target)), " against ", _num(_current_load), ")"])
	meta := rego.metadata.rule()
}

_from := lib.message(["pool ", lib.names(_current)]) if count(_current) > 0

else := "an unknown pool"

# METADATA
# title: SLA credit
# description: >-
#   The breach is not remedied by a move (the tier does not move, or no better pool is usable):
#   the tenant is notified and credited.
# custom:
#   code: SLA_CREDIT
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.sla_breach"} if {
	_action == "credit"
	msg := lib.message([_breach, "; credited ", _credit, "% of its charge", _why_not_moved])
	meta := rego.metadata.rule()
}

_why_not_moved := "" if {
	not _terms.replace
} else := lib.message(["; no less loaded ", lib.payload.gpu_class, " pool it may use within its residency (", lib.tenant.data_residency, ")"])

# METADATA
# title: Best effort notified only
# description: A spot deployment's breach is reported to the tenant; best effort earns no credit.
# custom:
#   code: SLA_NOTIFY_ONLY
warn contains {"code": meta.custom.code, "message": msg, "policy": "gpupaas.sla_breach"} if {
	_action == "notify"
	not _no_objective
	msg := lib.message([_breach, "; tier ", _tier, " is best effort: notified only"])
	meta := rego.metadata.rule()
}

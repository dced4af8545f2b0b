package gpupaas.sla_breach_test

import data.gpupaas.decision
import data.gpupaas.testdata

_samples := data.gpupaas.sla_breach.samples

_passing_samples := {name |
	some name, sample in _samples
	result := decision.result with input as sample.input
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.matches(result, sample.expect)
}

test_samples if {
	count(_samples) >= 5
	_passing_samples == {name | some name, _ in _samples}
}

_breach(tenant, payload) := {"kind": "sla_breach", "tenant": tenant, "actor": "pdp sla", "sla_breach": payload}

# an enterprise tenant on shared pools, anywhere, with both objectives
_shared_enterprise := object.union(testdata.tenants.globex, {
	"name": "ent-shared", "tier": "enterprise",
	"sla": {"class": "latency-critical", "latency_p99_ms": 500, "availability": 99.9},
})

_spot_with_slo := object.union(testdata.tenants["initech-spot"], {
	"name": "spot-slo",
	"sla": {"class": "best-effort", "availability": 99},
})

_tenants := object.union(testdata.tenants, {"ent-shared": _shared_enterprise, "spot-slo": _spot_with_slo})

_decide(intent) := result if {
	result := decision.result with input as intent
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as _tenants
}

_latency(tenant, pools, load) := _breach(tenant, {
	"deployment": "chat", "gpu_class": "H100-80GB", "objective": "latency", "severity": "fast",
	"burn_rate": 48.5, "measured": {"p99_ms": 1840.2, "availability": 100},
	"current_pools": pools, "pool_load": load,
})

test_enterprise_moves_to_the_least_loaded_shared_pool_within_residency if {
	result := _decide(_latency("ent-shared", ["eu-h100-shared"], {"eu-h100-shared": 0.75, "us-h100-shared": 0.25}))
	result.outcome == "ALLOW"
	result.constraints.sla_escalation == {
		"action": "replace", "target_pool": "us-h100-shared",
		"from_pools": ["eu-h100-shared"], "credit_percent": 0, "fallback_credit_percent": 10,
	}
	result.warnings == [{
		"code": "SLA_REPLACED",
		"message": `deployment "chat" of tenant "ent-shared" (tier enterprise) breaches its latency SLA: p99 1840.2 ms against 500 ms, the error budget burning at 48.5x (fast alert); re-placed from pool eu-h100-shared onto pool us-h100-shared (load 0.25 against 0.75)`,
		"policy": "gpupaas.sla_breach",
	}]
}

test_a_pool_of_other_residency_or_isolation_is_never_a_target if {
	# acme-eu: EU only and dedicated: the shared EU and US pools are not its to use, however idle
	result := _decide(_latency("acme-eu", ["acme-h100-dedicated"], {"acme-h100-dedicated": 0.5, "eu-h100-shared": 0, "us-h100-shared": 0}))
	result.constraints.sla_escalation.action == "credit"
	result.constraints.sla_escalation.credit_percent == 10
	result.warnings[0].code == "SLA_CREDIT"
	endswith(result.warnings[0].message, "; credited 10% of its charge; no less loaded H100-80GB pool it may use within its residency (eu-only)")
}

test_no_less_loaded_pool_credits_the_enterprise_tenant if {
	result := _decide(_latency("ent-shared", ["eu-h100-shared"], {"eu-h100-shared": 0.25, "us-h100-shared": 0.5}))
	result.constraints.sla_escalation == {"action": "credit", "target_pool": "", "from_pools": ["eu-h100-shared"], "credit_percent": 10, "fallback_credit_percent": 10}
}

test_an_unknown_current_pool_counts_as_fully_loaded if {
	result := _decide(_latency("ent-shared", [], {"eu-h100-shared": 0.5, "us-h100-shared": 0.75}))
	result.constraints.sla_escalation.target_pool == "eu-h100-shared"
	contains(result.warnings[0].message, "re-placed from an unknown pool onto pool eu-h100-shared (load 0.5 against 1)")
}

test_standard_is_credited_by_severity if {
	slow := _decide(_breach("globex", {
		"deployment": "embed", "gpu_class": "A100-40GB", "objective": "availability", "severity": "slow",
		"burn_rate": 6.5, "measured": {"availability": 97.25},
	}))
	slow.constraints.sla_escalation == {"action": "credit", "target_pool": "", "from_pools": [], "credit_percent": 2, "fallback_credit_percent": 2}
	slow.warnings == [{
		"code": "SLA_CREDIT",
		"message": `deployment "embed" of tenant "globex" (tier standard) breaches its availability SLA: availability 97.25% against 99.5%, the error budget burning at 6.5x (slow alert); credited 2% of its charge`,
		"policy": "gpupaas.sla_breach",
	}]
}

test_spot_is_notified_only if {
	result := _decide(_breach("spot-slo", {
		"deployment": "etl", "gpu_class": "A100-40GB", "objective": "availability", "severity": "fast",
		"burn_rate": 20,
	}))
	result.constraints.sla_escalation.action == "notify"
	result.constraints.sla_escalation.credit_percent == 0
	result.constraints.sla_escalation.fallback_credit_percent == 0
	result.warnings[0].code == "SLA_NOTIFY_ONLY"
	contains(result.warnings[0].message, "availability unknown% against 99%")
}

test_no_objective_denies_naming_the_sla_class if {
	result := _decide(_breach("initech-spot", {
		"deployment": "etl", "gpu_class": "A100-40GB", "objective": "latency", "severity": "fast", "burn_rate": 20,
	}))
	result.outcome == "DENY"
	result.reasons == [{
		"code": "SLA_NO_OBJECTIVE",
		"message": `deployment "etl" of tenant "initech-spot": its SLA (class best-effort) sets no latency objective, nothing to escalate`,
		"policy": "gpupaas.sla_breach",
	}]
	not result.constraints.sla_escalation
	result.warnings == []
}

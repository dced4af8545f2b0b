package gpupaas.drift_test

import data.gpupaas.decision
import data.gpupaas.testdata

_samples := data.gpupaas.drift.samples

_passing_samples := {name |
	some name, sample in _samples
	result := decision.result with input as sample.input
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
	testdata.matches(result, sample.expect)
}

test_samples if {
	count(_samples) >= 4
	_passing_samples == {name | some name, _ in _samples}
}

_intent(tenant, changes) := {
	"kind": "remediate_drift", "tenant": tenant, "actor": "admin",
	"remediate_drift": object.union(
		{"namespace": "ns", "pod": "p-1", "node": "n-1", "finding": "misplaced", "replaceable": true},
		changes,
	),
}

_decide(intent) := result if {
	result := decision.result with input as intent
		with data.gpupaas.fleet as testdata.fleet
		with data.gpupaas.tenants as testdata.tenants
}

test_spot_replaceable_is_replaced_after_its_grace if {
	result := _decide(_intent("initech-spot", {}))
	result.outcome == "ALLOW"
	result.constraints.drift == {"action": "replace", "grace_seconds": 300}
	result.warnings == [{
		"code": "DRIFT_REPLACE",
		"message": `pod "ns/p-1" on node "n-1" of tenant "initech-spot" (tier spot) is misplaced by the current policy; re-placed where the policy allows it after a grace of 300 s unless the finding clears`,
		"policy": "gpupaas.drift",
	}]
}

test_spot_unplaceable_is_evicted if {
	result := _decide(_intent("initech-spot", {"replaceable": false, "finding": "refused"}))
	result.constraints.drift == {"action": "evict", "grace_seconds": 300}
	[w.code | some w in result.warnings] == ["DRIFT_EVICT"]
}

test_standard_unplaceable_deployment_is_scaled_to_zero if {
	result := _decide(_intent("globex", {"replaceable": false, "deployment": "train"}))
	result.constraints.drift == {"action": "scale_to_zero", "grace_seconds": 3600}
	result.warnings[0].code == "DRIFT_SCALE_TO_ZERO"
	contains(result.warnings[0].message, `deployment "train" scaled to zero after a grace of 3600 s`)
}

test_standard_unplaceable_pod_of_no_deployment_is_evicted if {
	result := _decide(_intent("globex", {"replaceable": false}))
	result.constraints.drift.action == "evict"
}

test_enterprise_is_notified_only_without_approval if {
	result := _decide(_intent("acme-eu", {}))
	result.outcome == "ALLOW"
	result.constraints.drift == {"action": "notify", "grace_seconds": 86400}
	result.warnings == [{
		"code": "DRIFT_NOTIFY_ONLY",
		"message": `pod "ns/p-1" on node "n-1" of tenant "acme-eu" (tier enterprise) is misplaced by the current policy; tier enterprise is notified only until an admin approves its remediation`,
		"policy": "gpupaas.drift",
	}]
}

test_enterprise_approved_is_replaced if {
	result := _decide(_intent("acme-eu", {"approved": true}))
	result.constraints.drift.action == "replace"
	[w.code | some w in result.warnings] == ["DRIFT_APPROVED", "DRIFT_REPLACE"]
}

test_enterprise_approved_but_unplaceable_is_still_only_notified if {
	result := _decide(_intent("acme-eu", {"approved": true, "replaceable": false}))
	result.constraints.drift.action == "notify"
	some w in result.warnings
	w.code == "DRIFT_NOTIFY_ONLY"
	endswith(w.message, "notified only: no placement the policy allows")
}

test_fleet_sets_the_grace_of_a_tier if {
	fleet := object.union(testdata.fleet, {"drift": {"spot": {"grace_seconds": 5}}})
	result := decision.result with input as _intent("initech-spot", {})
		with data.gpupaas.fleet as fleet
		with data.gpupaas.tenants as testdata.tenants
	result.constraints.drift == {"action": "replace", "grace_seconds": 5}
}

test_unknown_tenant_is_denied if {
	result := _decide(_intent("nobody", {}))
	result.outcome == "DENY"
	not result.constraints.drift
}

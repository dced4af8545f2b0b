"""The admission check's pure parts: which Workloads wait, the intents of their PodSets, and the
entry a set of decisions becomes. Decisions here are real ones, from the example policies on the
real OPA (the `stack` fixture), except for the shape tests of a single function."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pdp.decision import Decision
from pdp.embedded import EmbeddedPDP
from pdp.substrate.kubernetes.enforcement.workloads import InvalidObject
from pdp.substrate.kueue import checks, objects

FLAVORS = {
    "gpupaas-h100-80gb-dedicated-acme-eu": objects.dedicated_flavor(
        "H100-80GB",
        {
            "gpu_classes": {
                "H100-80GB": {
                    "node_label": {"key": "nvidia.com/gpu.product", "value": "NVIDIA-H100-80GB-HBM3"}
                }
            }
        },
        "acme-eu",
    )
}


def workload(
    *,
    namespace: str = "acme-prod",
    pods: int = 2,
    node_selector: dict[str, str] | None = None,
    flavor: str = "gpupaas-h100-80gb-dedicated-acme-eu",
    state: str = "Pending",
    conditions: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A Workload as Kueue writes it for a batch/v1 Job with quota reserved."""
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [{"name": "train", "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    conds = conditions or {"QuotaReserved": "True"}
    return {
        "apiVersion": "kueue.x-k8s.io/v1beta2",
        "kind": "Workload",
        "metadata": {
            "name": "job-train-1a2b3",
            "namespace": namespace,
            "uid": "u-1",
            "resourceVersion": "42",
        },
        "spec": {
            "queueName": "default",
            "podSets": [{"name": "main", "count": pods, "template": {"spec": spec}}],
        },
        "status": {
            "conditions": [{"type": t, "status": s} for t, s in conds.items()],
            "admission": {
                "clusterQueue": "gpupaas-acme-eu",
                "podSetAssignments": [{"name": "main", "flavors": {"nvidia.com/gpu": flavor}, "count": pods}],
            },
            "admissionChecks": [
                {
                    "name": "gpupaas-pdp",
                    "state": state,
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                },
                {
                    "name": "other-check",
                    "state": "Pending",
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                },
            ],
        },
    }


def decide(stack: EmbeddedPDP, wl: dict[str, Any]) -> list[tuple[checks.PodSetIntent, Decision | None]]:
    podsets = checks.podset_intents(wl, FLAVORS)
    out = []
    for ps in podsets:
        out.append((ps, stack.point.decide(ps.intent) if ps.intent else None))
    return out


def test_only_pending_entries_of_our_checks_of_workloads_holding_quota_wait() -> None:
    ours = {"gpupaas-pdp"}
    assert [e["name"] for e in checks.awaiting(workload(), ours)] == ["gpupaas-pdp"]
    assert checks.awaiting(workload(state="Ready"), ours) == []
    assert checks.awaiting(workload(conditions={"QuotaReserved": "False"}), ours) == []
    for done in ("Finished", "Evicted"):
        assert checks.awaiting(workload(conditions={"QuotaReserved": "True", done: "True"}), ours) == []
    inactive = workload()
    inactive["spec"]["active"] = False
    assert checks.awaiting(inactive, ours) == []
    assert checks.awaiting(workload(), {"someone-elses"}) == []


def test_a_podset_is_judged_as_it_will_run_with_its_flavor_merged_in() -> None:
    [ps] = checks.podset_intents(workload(pods=3), FLAVORS)
    assert ps.intent == {
        "kind": "admit_workload",
        "actor": "kueue",
        "admit_workload": {
            "namespace": "acme-prod",
            "name": "job-train-1a2b3/main",
            "kind": "Workload",
            "resources": {"nvidia.com/gpu": 3},
            "node_selector": {
                "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                "gpupaas.io/dedicated-tenant": "acme-eu",
            },
            "tolerations": [
                {
                    "key": "gpupaas.io/dedicated",
                    "operator": "Equal",
                    "value": "acme-eu",
                    "effect": "NoSchedule",
                }
            ],
        },
    }


def test_the_priority_class_is_the_workloads_and_a_podset_without_gpus_needs_no_decision() -> None:
    wl = workload()
    wl["spec"]["priorityClassRef"] = {
        "group": "kueue.x-k8s.io",
        "kind": "WorkloadPriorityClass",
        "name": "gpupaas-spot",
    }
    wl["spec"]["podSets"].append(
        {"name": "launcher", "count": 1, "template": {"spec": {"containers": [{"name": "l"}]}}}
    )
    gpu, launcher = checks.podset_intents(wl, {})
    assert gpu.intent is not None and gpu.intent["admit_workload"]["priority_class_name"] == "gpupaas-spot"
    # The launcher carries the priority class too, which is a platform constraint: it is decided.
    assert launcher.intent is not None and "resources" not in launcher.intent["admit_workload"]
    del wl["spec"]["priorityClassRef"]
    assert checks.podset_intents(wl, {})[1].intent is None


def test_a_malformed_podset_names_the_field() -> None:
    wl = workload()
    wl["spec"]["podSets"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = (
        "0.5"
    )
    with pytest.raises(InvalidObject) as bad:
        checks.podset_intents(wl, FLAVORS)
    assert 'spec.containers[0].resources.limits["nvidia.com/gpu"]' in str(bad.value)


def test_an_allowed_acme_workload_is_ready_with_its_region_and_pool(stack: EmbeddedPDP) -> None:
    wl = workload()
    entry = checks.check_entry("gpupaas-pdp", wl, decide(stack, wl))
    assert (
        entry["state"] == "Ready" and "gpupaas allowed workload acme-prod/job-train-1a2b3" in entry["message"]
    )
    [update] = entry["podSetUpdates"]
    # What the flavor brings (product, dedicated tenant, toleration) is not repeated.
    assert update["nodeSelector"] == {
        "gpupaas.io/pool": "acme-h100-dedicated",
        "topology.kubernetes.io/region": "eu-west-1",
    }
    assert "tolerations" not in update
    revision = stack.bundle.revision  # type: ignore[union-attr]
    assert update["labels"][checks.REVISION_LABEL] == revision == update["annotations"][checks.REVISION_LABEL]
    assert update["labels"][checks.DECISION_LABEL] in entry["message"]


def test_a_us_region_is_rejected_with_the_reason_tenant_and_provenance(stack: EmbeddedPDP) -> None:
    wl = workload(node_selector={"topology.kubernetes.io/region": "us-east-1"})
    entry = checks.check_entry("gpupaas-pdp", wl, decide(stack, wl))
    assert entry["state"] == "Rejected" and "podSetUpdates" not in entry
    message = entry["message"]
    assert message.startswith(
        "gpupaas denied workload acme-prod/job-train-1a2b3 podset main: [RESIDENCY_VIOLATION]"
    )
    assert "tenant acme-eu" in message and f"bundle {stack.bundle.revision}" in message  # type: ignore[union-attr]


def test_a_workload_in_a_namespace_no_tenant_owns_is_rejected(stack: EmbeddedPDP) -> None:
    wl = workload(namespace="nobodys")
    entry = checks.check_entry("gpupaas-pdp", wl, decide(stack, wl))
    assert entry["state"] == "Rejected" and "[TENANT_UNKNOWN]" in entry["message"]


def test_an_engine_failure_is_a_retry_with_backoff_never_ready() -> None:
    wl = workload()
    [ps] = checks.podset_intents(wl, FLAVORS)
    failed = Decision.from_dict(
        {
            "outcome": "DENY",
            "reasons": [
                {"code": "ENGINE_UNAVAILABLE", "message": "connection refused", "policy": "pdp.engine"}
            ],
            "decision_id": "d-1",
            "bundle_revision": "",
        }
    )
    retry = checks.RetryPolicy(base_seconds=10, max_seconds=300)
    first = checks.check_entry("gpupaas-pdp", wl, [(ps, failed)], retry_count=0, retry=retry)
    assert first["state"] == "Retry" and first["requeueAfterSeconds"] == 10
    assert "[ENGINE_UNAVAILABLE]" in first["message"] and "failing closed" in first["message"]
    later = checks.check_entry("gpupaas-pdp", wl, [(ps, failed)], retry_count=9, retry=retry)
    assert later["requeueAfterSeconds"] == 300
    # One failed PodSet is enough, whatever the others got.
    allowed = Decision.from_dict(
        {
            "outcome": "ALLOW",
            "reasons": [],
            "constraints": {},
            "decision_id": "d-2",
            "bundle_revision": "r",
        }
    )
    assert checks.check_entry("gpupaas-pdp", wl, [(ps, allowed), (ps, failed)])["state"] == "Retry"


def test_needs_approval_is_rejected_since_admission_cannot_wait() -> None:
    wl = workload()
    [ps] = checks.podset_intents(wl, FLAVORS)
    approval = Decision.from_dict(
        {"outcome": "NEEDS_APPROVAL", "reasons": [{"code": "X_APPROVAL_REQUIRED", "message": "m"}]}
    )
    entry = checks.check_entry("gpupaas-pdp", wl, [(ps, approval)])
    assert entry["state"] == "Rejected" and "needs approval" in entry["message"]


def test_placement_update_leaves_what_the_template_sets_and_keeps_bad_label_values_to_annotations() -> None:
    template = {
        "nodeSelector": {"topology.kubernetes.io/region": "eu-west-1"},
        "tolerations": [
            {"key": "gpupaas.io/dedicated", "operator": "Equal", "value": "t", "effect": "NoSchedule"}
        ],
    }
    decision = Decision.from_dict(
        {
            "outcome": "ALLOW",
            "decision_id": "d-1",
            "bundle_revision": "not a label value!",
            "constraints": {
                "node_selector": {"nvidia.com/gpu.product": "P"},
                "node_affinity": [
                    {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]},
                    {"key": "zone", "operator": "In", "values": ["a", "b"]},  # one value per key only
                    {"key": "gpupaas.io/dedicated-tenant", "operator": "DoesNotExist"},
                ],
                "tolerations": [
                    {
                        "key": "gpupaas.io/dedicated",
                        "operator": "Equal",
                        "value": "t",
                        "effect": "NoSchedule",
                    },
                    {"key": "other", "operator": "Exists"},
                ],
                "isolation": {"mode": "dedicated", "dedicated_pools": ["p1", "p2"]},  # two pools: no pin
            },
        }
    )
    update = checks.placement_update("main", template, decision)
    assert update == {
        "name": "main",
        "labels": {checks.DECISION_LABEL: "d-1"},
        "annotations": {checks.DECISION_LABEL: "d-1", checks.REVISION_LABEL: "not a label value!"},
        "nodeSelector": {"nvidia.com/gpu.product": "P"},
        "tolerations": [{"key": "other", "operator": "Exists"}],
    }


def test_the_status_apply_holds_only_our_entry_and_condition_with_preconditions() -> None:
    wl = workload()
    entry = {"name": "gpupaas-pdp", "state": "Ready", "message": "ok"}
    body = checks.status_apply(wl, entry, "2026-02-02T00:00:00Z")
    assert body["metadata"] == {
        "name": "job-train-1a2b3",
        "namespace": "acme-prod",
        "uid": "u-1",
        "resourceVersion": "42",
    }
    assert body["status"]["admissionChecks"] == [{**entry, "lastTransitionTime": "2026-02-02T00:00:00Z"}]
    [cond] = body["status"]["conditions"]
    assert (
        cond["type"] == checks.DECISION_CONDITION and cond["status"] == "True" and cond["reason"] == "Allowed"
    )
    # Same state again: the transition time stays.
    again = copy.deepcopy(wl)
    again["status"]["admissionChecks"][0].update(state="Ready", lastTransitionTime="2026-01-05T00:00:00Z")
    again["status"]["conditions"].append({**cond, "lastTransitionTime": "2026-01-06T00:00:00Z"})
    later = checks.status_apply(again, entry, "2026-03-03T00:00:00Z")
    assert later["status"]["admissionChecks"][0]["lastTransitionTime"] == "2026-01-05T00:00:00Z"
    assert later["status"]["conditions"][0]["lastTransitionTime"] == "2026-01-06T00:00:00Z"
    assert not checks.differs(again["status"]["admissionChecks"][0] | {"message": "ok"}, entry)
    assert checks.differs(wl["status"]["admissionChecks"][0], entry)


def test_a_spot_job_labelled_with_the_enterprise_priority_class_is_rejected(stack: EmbeddedPDP) -> None:
    wl = workload(namespace="initech-batch", pods=1, flavor="gpupaas-a100-40gb-shared")
    wl["spec"]["priorityClassRef"] = {
        "group": "kueue.x-k8s.io",
        "kind": "WorkloadPriorityClass",
        "name": "gpupaas-enterprise",
    }
    entry = checks.check_entry("gpupaas-pdp", wl, decide(stack, wl))
    assert entry["state"] == "Rejected" and "[PRIORITY_CLASS_ABOVE_TIER]" in entry["message"], entry

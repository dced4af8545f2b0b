"""Reading kube-scheduler's refusal of a pod (bench/fleet/promises.py), pure."""

from __future__ import annotations

from bench.fleet.promises import pod_view, why_unschedulable

EXTENDER = (
    '0/8 nodes are available: 1 ENTITLEMENT_EXCEEDED: node "eu-1" has GPU class H100-80GB: tenant "acme" '
    'holds 4 and workload "acme-jobs/p" asks for 1, above the entitlement of 4, 4 ENTITLEMENT_EXCEEDED: '
    'node "eu-2" has GPU class H100-80GB; RESIDENCY_VIOLATION: node "eu-2" is in us-east-1, '
    "3 node(s) had untolerated taint {gpupaas.io/dedicated: acme}. preemption: 0/8 nodes are available: "
    "8 Preemption is not helpful for scheduling."
)


def test_the_reason_given_for_most_nodes_names_the_policys_first_code() -> None:
    assert why_unschedulable(EXTENDER) == "ENTITLEMENT_EXCEEDED"


def test_the_schedulers_own_reasons_are_kept_in_its_words() -> None:
    message = (
        "0/405 nodes are available: 105 node(s) didn't match Pod's node affinity/selector, "
        "300 Insufficient cpu. preemption: 0/405 nodes are available: 405 Preemption is not helpful."
    )
    assert why_unschedulable(message) == "Insufficient cpu"
    assert why_unschedulable("0/3 nodes are available: 3 node(s) had untolerated taint {a: b}.") == (
        "node(s) had untolerated taint {...}"
    )
    assert why_unschedulable("") == ""


def test_a_pod_view_carries_the_refusal() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "acme-jobs"},
        "spec": {"containers": []},
        "status": {"conditions": [{"type": "PodScheduled", "status": "False", "message": EXTENDER}]},
    }
    view = pod_view(pod)
    assert view.unschedulable and view.unschedulable_why == "ENTITLEMENT_EXCEEDED"
    assert not pod_view({**pod, "status": {}}).unschedulable

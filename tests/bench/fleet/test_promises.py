"""Reading kube-scheduler's refusal of a pod (bench/fleet/promises.py), pure."""

from __future__ import annotations

from bench.fleet.mapping import GPU, Placed, Tenant
from bench.fleet.promises import PodView, RunningHoldings, check, pod_view, why_unschedulable
from bench.fleet.trace import TraceNode

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


def _bound(name: str, namespace: str, gpus: int, priority_class: str) -> PodView:
    return PodView(name, namespace, "n-1", "Running", priority_class, resources={GPU: gpus})


def test_a_tenant_above_its_entitlement_breaks_it_unless_it_borrows_as_spot() -> None:
    node = Placed(TraceNode("n-1", 1, 96_000, 786_432, 8, "A100"), cluster="us", pool="p", kind="whole")
    standard = Tenant("acme", "standard", "shared", "any", sharing=False)
    spot = Tenant("umbrella", "spot", "shared", "any", sharing=False)
    pods = [_bound("a", "acme-jobs", 3, "gpupaas-standard"), _bound("u", "umbrella-jobs", 3, "gpupaas-spot")]

    found = check(
        pods,
        {"n-1": node},
        {"acme-jobs": standard, "umbrella-jobs": spot},
        {"acme": {"A100": 2}, "umbrella": {"A100": 2}},
        {"us": "US"},
        sharing_replicas=4,
        spot_priority_class="gpupaas-spot",
    )
    # the spot tenant borrows idle capacity, preemptibly: its entitlement is a floor
    assert [(v.check, v.pod) for v in found] == [("entitlement exceeded", "acme")]


def test_running_holdings_see_an_entitlement_broken_between_two_samples() -> None:
    """Two pods of 2 GPUs each hold 4 against an entitlement of 3 only while both run: a sample
    before the second starts and one after the first ends see nothing; the holdings, kept at each
    change, see it. A pod that ended gives its GPUs back."""
    node = Placed(TraceNode("n-1", 1, 96_000, 786_432, 8, "A100"), cluster="us", pool="p", kind="whole")
    standard = Tenant("acme", "standard", "shared", "any", sharing=False)
    holdings = RunningHoldings({"n-1": node}, {"acme-jobs": standard}, {"acme": {"A100": 3}}, 4)
    first, second = _bound("a", "acme-jobs", 2, "s"), _bound("b", "acme-jobs", 2, "s")

    assert holdings.apply("acme-jobs/a", first) is None
    assert holdings.apply("acme-jobs/a", first) is None  # seen again (a status change): counted once
    broken = holdings.apply("acme-jobs/b", second)
    assert broken is not None and broken.check == "entitlement exceeded" and broken.pod == "acme"
    assert "holds 4 A100 GPUs, entitled to 3" in broken.detail

    first.ended = 1.0
    assert holdings.apply("acme-jobs/a", first) is None
    assert holdings.held[("acme", "A100")] == 2
    third = _bound("c", "acme-jobs", 1, "s")
    assert holdings.apply("acme-jobs/c", third) is None  # 3 of 3

"""kube-scheduler's preemption asks the PDP (the extender's preemptVerb), on the real scheduler.

A node the scheduler's own plugins find full is never shown to the extender's filter, so without
the verb the scheduler evicted pods there for a pod the policy then refused on that node: in the
fleet's saturation run of 2026-12-04 19:00, 30 pods preempted 45 spot pods and none of the 30 was
bound. Here one node, tainted and labelled for these tests alone, holds one spot pod of
initech-spot on its only GPU: acme-eu (EU-only, dedicated) may not preempt it, globex (standard,
any region) may."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY

from tests.e2e.conftest import A100, Enforcement
from tests.e2e.test_enforcement_e2e import bound_node, create, gpu_pod, own_pool

NODE = "us-spot-2"  # in the fleet's us-a100-spot pool, not among the session cluster's nodes
MARK = "e2e.gpupaas.io/preemption"
# Only these tests' pods tolerate the taint and select the label: the node is invisible to the rest.
TOLERATION = {"key": MARK, "operator": "Equal", "value": "yes", "effect": "NoSchedule"}
SELECTOR = {MARK: "yes"}


def asked_to_preempt(outcome: str) -> float:
    found = REGISTRY.get_sample_value(
        "gpupaas_pdp_extender_requests_total", {"verb": "preempt", "outcome": outcome}
    )
    return found or 0.0


@pytest.fixture
def full_node(cluster: Enforcement, api: client.ApiClient) -> Iterator[client.V1Pod]:
    """The node, its one GPU held by a spot pod (the victim, returned) once bound there."""
    core = client.CoreV1Api(api)
    labels = {
        "kubernetes.io/hostname": NODE,
        "topology.kubernetes.io/region": "us-east-1",
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.count": "1",
        "nvidia.com/gpu.product": f"{A100}-SHARED",
        "nvidia.com/gpu.sharing-strategy": "time-slicing",
        "gpupaas.io/pool": "us-a100-spot",
        MARK: "yes",
    }
    core.create_node(
        client.V1Node(
            metadata=client.V1ObjectMeta(name=NODE, labels=labels),
            spec=client.V1NodeSpec(taints=[client.V1Taint(key=MARK, value="yes", effect="NoSchedule")]),
        )
    )
    pods: list[tuple[str, str]] = []
    try:
        resources = {"cpu": "64", "memory": "512Gi", "pods": "110", "nvidia.com/gpu": "1"}
        core.patch_node_status(
            NODE,
            {
                "status": {
                    "capacity": resources,
                    "allocatable": resources,
                    "conditions": [
                        {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "e2e"}
                    ],
                }
            },
        )
        victim = _admitted(
            api,
            gpu_pod(
                "initech-batch",
                node_selector=SELECTOR,
                tolerations=[TOLERATION],
                priority_class="gpupaas-spot",
            ),
        )
        pods.append(("initech-batch", victim.metadata.name))
        assert bound_node(api, "initech-batch", victim.metadata.name) == NODE
        yield victim
    finally:
        for namespace, name in pods + _pods_on_node(core):
            with contextlib.suppress(ApiException):
                core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        core.delete_node(NODE)


def _pods_on_node(core: client.CoreV1Api) -> list[tuple[str, str]]:
    found = core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={NODE}").items
    nominated = [
        p for p in core.list_pod_for_all_namespaces().items if (p.status.nominated_node_name or "") == NODE
    ]
    return [(p.metadata.namespace, p.metadata.name) for p in found + nominated]


def _admitted(api: client.ApiClient, pod: dict[str, Any], timeout: float = 60) -> client.V1Pod:
    """Created once the webhook has taken effect (the session cluster registers it at start)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return create(api, pod)
        except ApiException as exc:
            if time.monotonic() > deadline or exc.status not in (500, 503):
                raise
        time.sleep(0.5)


def _preemptor(
    api: client.ApiClient, namespace: str, priority_class: str, tolerations: Sequence[dict[str, str]] = ()
) -> client.V1Pod:
    """A pod of `namespace` asking for the full node's GPU, and only that node (its label selected,
    its taint and `tolerations` tolerated), at `priority_class`: above the spot victim's, so the
    scheduler looks at preempting it."""
    pod = gpu_pod(
        namespace,
        node_selector=SELECTOR,
        tolerations=[*tolerations, TOLERATION],
        priority_class=priority_class,
    )
    return create(api, pod)


def _read(api: client.ApiClient, pod: client.V1Pod) -> client.V1Pod:
    return client.CoreV1Api(api).read_namespaced_pod(pod.metadata.name, pod.metadata.namespace)


def test_a_pod_the_policy_refuses_on_the_node_evicts_nothing_there(
    full_node: client.V1Pod, api: client.ApiClient
) -> None:
    asked = asked_to_preempt("filtered")
    acme = _preemptor(api, "acme-prod", "gpupaas-enterprise", own_pool("acme-eu"))
    evicted = "the spot pod was evicted for a pod the policy refuses"
    deadline = time.monotonic() + 60
    while asked_to_preempt("filtered") <= asked:
        assert _read(api, full_node).metadata.deletion_timestamp is None, evicted
        assert time.monotonic() < deadline, "kube-scheduler never asked the extender to preempt"
        time.sleep(0.2)
    time.sleep(3)  # what kube-scheduler would do with an answer keeping the node, it would have done
    victim = _read(api, full_node)
    assert victim.metadata.deletion_timestamp is None, evicted
    assert victim.spec.node_name == NODE
    pending = _read(api, acme)
    assert pending.spec.node_name is None and not pending.status.nominated_node_name


def test_a_pod_the_policy_accepts_once_the_victim_is_gone_preempts_it(
    full_node: client.V1Pod, api: client.ApiClient
) -> None:
    asked = asked_to_preempt("all_eligible")
    globex = _preemptor(api, "globex-ml", "gpupaas-standard")
    deadline = time.monotonic() + 60
    while (victim := _read(api, full_node)).metadata.deletion_timestamp is None:
        assert time.monotonic() < deadline, "kube-scheduler never preempted the spot pod"
        time.sleep(0.2)
    assert asked_to_preempt("all_eligible") > asked
    conditions = {c.type: c.reason for c in victim.status.conditions or []}
    assert conditions.get("DisruptionTarget") == "PreemptionByScheduler", conditions
    # No kubelet finishes the victim here: once it is removed, the preemptor binds to the node.
    client.CoreV1Api(api).delete_namespaced_pod(
        victim.metadata.name, victim.metadata.namespace, grace_period_seconds=0
    )
    assert bound_node(api, "globex-ml", globex.metadata.name) == NODE

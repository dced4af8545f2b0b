"""Fuzzing the admission webhook (/validate, HTTPS) and the scheduler extender (/filter,
/prioritize) over the real OPA: any body gets a 2xx/4xx JSON answer in time, never a 5xx, and a
pod that asks for GPUs in a namespace no tenant owns is never admitted and never given a node,
whatever else the request holds."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from pdp.embedded import EmbeddedPDP
from pdp.substrate.kubernetes.enforcement.extender import MAX_SCORE, ExtenderServer, SchedulerExtender
from pdp.substrate.kubernetes.enforcement.webhook import AdmissionWebhook, WebhookServer
from tests.conftest import self_signed
from tests.fuzz.strategies import FUZZ, HANG, corrupted, json_values, mutated
from tests.substrate.kubernetes.enforcement.conftest import labels, node, own_pool, pod, review

TENANT_NAMESPACES = {"acme-prod", "acme-staging", "globex-ml", "initech-batch"}
GPU_RESOURCES = ["nvidia.com/gpu", "amd.com/gpu", "nvidia.com/mig-1g.10gb"]
NODES = [
    node("eu-acme-1", labels("eu-west-1", "acme-h100-dedicated", "acme-eu")),
    node("eu-shared-1", labels("eu-west-1", "eu-h100-shared")),
    node("us-shared-1", labels("us-east-1", "us-h100-shared")),
]
GOOD_PODS = [
    pod(namespace="acme-prod", limits={"nvidia.com/gpu": "1"}, tolerations=own_pool("acme-eu")),
    pod(namespace="globex-ml", limits={"nvidia.com/gpu": "2"}),
    pod(namespace="acme-prod", node_selector={"topology.kubernetes.io/region": "us-east-1"}),
]
GOOD_REVIEWS = [review(p, p["metadata"]["namespace"]) for p in GOOD_PODS]

stray_namespaces = st.text(min_size=1, max_size=20).filter(lambda ns: ns not in TENANT_NAMESPACES)
gpu_counts = st.one_of(st.integers(min_value=1, max_value=64), st.sampled_from(["1", "2", "8"]))
label_keys = st.sampled_from(
    [
        "topology.kubernetes.io/region",
        "gpupaas.io/pool",
        "gpupaas.io/dedicated-tenant",
        "kubernetes.io/hostname",
    ]
) | st.text(max_size=10)
label_values = st.sampled_from(
    ["eu-west-1", "us-east-1", "acme-eu", "acme-h100-dedicated", "eu-h100-shared"]
) | st.text(max_size=10)


@st.composite
def stray_gpu_pods(draw: st.DrawFn) -> dict[str, Any]:
    """A pod asking for GPUs in a namespace no tenant owns, with whatever else a fuzzer adds:
    selectors and tolerations naming real pools and tenants, extra containers, odd fields."""
    namespace = draw(stray_namespaces)
    limits = {draw(st.sampled_from(GPU_RESOURCES)): draw(gpu_counts)}
    spec_extras = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "nodeSelector": st.dictionaries(label_keys, label_values, max_size=3),
                "tolerations": st.lists(
                    st.fixed_dictionaries(
                        {
                            "key": st.just("gpupaas.io/dedicated"),
                            "operator": st.just("Equal"),
                            "value": label_values,
                        }
                    ),
                    max_size=2,
                ),
                "priorityClassName": st.sampled_from(["gpupaas-enterprise", "gpupaas-spot"])
                | st.text(max_size=8),
                "runtimeClassName": json_values,
                "x-extra": json_values,
            },
        )
    )
    obj = pod(
        name=draw(st.text(min_size=1, max_size=12)),
        namespace=namespace,
        uid=draw(st.uuids()).hex,
        limits=limits,
    )
    obj["spec"].update(spec_extras)
    extra_containers = draw(st.lists(st.fixed_dictionaries({"name": st.text(max_size=5)}), max_size=2))
    obj["spec"]["containers"] += extra_containers
    return obj


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def webhook(stack: EmbeddedPDP, tls_files: tuple[Path, Path]) -> Iterator[httpx.Client]:
    cert, key = tls_files
    with WebhookServer(AdmissionWebhook(stack.point), cert_file=cert, key_file=key) as server:
        context = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=server.url, verify=context, timeout=HANG) as client:
            yield client


@pytest.fixture(scope="module")
def extender(stack: EmbeddedPDP) -> Iterator[httpx.Client]:
    with (
        ExtenderServer(SchedulerExtender(stack.point)) as server,
        httpx.Client(base_url=server.url, timeout=HANG) as client,
    ):
        yield client


def answered(response: httpx.Response) -> Any:
    """A non-5xx JSON answer; its document."""
    assert response.status_code < 500, (response.status_code, response.text)
    event(f"HTTP {response.status_code}")
    return response.json()


def review_body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


BLOBS = [review_body(r) for r in GOOD_REVIEWS]


@FUZZ
@given(body=corrupted(BLOBS) | mutated(GOOD_REVIEWS).map(review_body))
def test_webhook_with_any_body(webhook: httpx.Client, body: bytes) -> None:
    doc = answered(webhook.post("/validate?timeout=5s", content=body))
    if isinstance(doc, dict) and doc.get("kind") == "AdmissionReview":
        assert isinstance(doc["response"]["allowed"], bool)


@FUZZ
@given(obj=stray_gpu_pods(), operation=st.sampled_from(["CREATE", "UPDATE"]))
def test_webhook_never_admits_a_gpu_pod_outside_tenant_namespaces(
    webhook: httpx.Client, obj: dict[str, Any], operation: str
) -> None:
    doc = answered(
        webhook.post(
            "/validate?timeout=5s",
            content=review_body(review(obj, obj["metadata"]["namespace"], operation=operation)),
        )
    )
    assert doc["response"]["allowed"] is False, doc


@settings(FUZZ)
@given(obj=stray_gpu_pods(), operation=st.sampled_from([None, "", "create", "PATCH"]) | st.text(max_size=8))
def test_webhook_never_admits_a_gpu_pod_under_an_unknown_operation(
    webhook: httpx.Client, obj: dict[str, Any], operation: str | None
) -> None:
    doc = review(obj, obj["metadata"]["namespace"])
    if operation is None:
        del doc["request"]["operation"]
    else:
        doc["request"]["operation"] = operation
    if operation in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
        return
    assert (
        answered(webhook.post("/validate?timeout=5s", content=review_body(doc)))["response"]["allowed"]
        is False
    )


def extender_args(obj: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Pod": obj, "Nodes": {"items": nodes}, "NodeNames": None}


GOOD_ARGS = [extender_args(p, NODES) for p in GOOD_PODS]


@FUZZ
@given(
    path=st.sampled_from(["/filter", "/prioritize"]),
    body=corrupted([review_body(a) for a in GOOD_ARGS]) | mutated(GOOD_ARGS).map(review_body),
)
def test_extender_with_any_body(extender: httpx.Client, path: str, body: bytes) -> None:
    answered(extender.post(path, content=body))


GOOD_PREEMPTIONS = [
    {"Pod": p, "NodeNameToMetaVictims": {"n1": {"Pods": [{"UID": "victim"}], "NumPDBViolations": 0}}}
    for p in GOOD_PODS
]


@FUZZ
@given(
    body=corrupted([review_body(a) for a in GOOD_PREEMPTIONS]) | mutated(GOOD_PREEMPTIONS).map(review_body)
)
def test_extender_preempt_with_any_body(extender: httpx.Client, body: bytes) -> None:
    """A malformed ExtenderPreemptionArgs is a 400 (kube-scheduler then evicts nothing), never a 500."""
    answer = answered(extender.post("/preempt", content=body))
    assert "error" in answer or set(answer) == {"NodeNameToMetaVictims"}, answer


fuzzed_nodes = st.lists(
    st.builds(
        lambda name, node_labels: node(name, node_labels),
        st.text(min_size=1, max_size=10),
        st.dictionaries(label_keys, label_values, max_size=4),
    ),
    max_size=4,
    unique_by=lambda n: n["metadata"]["name"],
)


@FUZZ
@given(obj=stray_gpu_pods(), extra_nodes=fuzzed_nodes)
def test_extender_never_places_a_gpu_pod_outside_tenant_namespaces(
    extender: httpx.Client, obj: dict[str, Any], extra_nodes: list[dict[str, Any]]
) -> None:
    names = {n["metadata"]["name"] for n in NODES}
    nodes = NODES + [n for n in extra_nodes if n["metadata"]["name"] not in names]
    args = review_body(extender_args(obj, nodes))
    result = answered(extender.post("/filter", content=args))
    assert not (result.get("Nodes") or {}).get("items") and not result.get("NodeNames"), result
    scores = answered(extender.post("/prioritize", content=args))
    assert all(s["Score"] < MAX_SCORE for s in scores), scores

"""Property-based tests over request parsing: whatever arrives, the only failures are the named,
reasoned ones, never a stray exception that would turn into a 500 or a crash."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdp.embedded import EmbeddedPDP
from pdp.intents import validate_intent
from pdp.point import DecisionPoint
from pdp.substrate.kubernetes.enforcement.admission import BadReview, parse_review
from pdp.substrate.kubernetes.enforcement.claims import claim_workload
from pdp.substrate.kubernetes.enforcement.extender import SchedulerExtender
from pdp.substrate.kubernetes.enforcement.webhook import AdmissionWebhook
from pdp.substrate.kubernetes.enforcement.workloads import (
    SUPPORTED_KINDS,
    InvalidObject,
    UnsupportedObject,
    workload_from_object,
)
from tests.substrate.kubernetes.enforcement.conftest import labels

json_values = st.recursive(
    # JSON has no NaN or Infinity (RFC 8259): the API server never sends them, and the webhook's
    # parser refuses a body with them as not JSON.
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)

GPU_NAMES = ["nvidia.com/gpu", "amd.com/gpu", "nvidia.com/gpu.shared", "nvidia.com/mig-1g.10gb", "cpu"]
quantities = st.one_of(
    st.integers(min_value=-2, max_value=64),
    st.sampled_from(["1", "2", "0", "1.5", "500m", "+3", "", "1Gi"]),
    json_values,
)
resource_lists = st.dictionaries(st.sampled_from(GPU_NAMES), quantities, max_size=3)
containers = st.fixed_dictionaries(
    {},
    optional={
        "name": st.text(max_size=5),
        "resources": st.fixed_dictionaries(
            {}, optional={"limits": resource_lists, "requests": resource_lists}
        )
        | json_values,
    },
)
label_keys = st.sampled_from(
    ["topology.kubernetes.io/region", "gpupaas.io/pool", "kubernetes.io/os", "kubernetes.io/hostname", "x"]
)
requirements = st.fixed_dictionaries(
    {"key": label_keys | json_values, "operator": st.sampled_from(["In", "NotIn", "Exists", "Bogus"])},
    optional={"values": st.lists(st.text(max_size=5), max_size=3) | json_values},
)
affinity = st.fixed_dictionaries(
    {
        "nodeAffinity": st.fixed_dictionaries(
            {
                "requiredDuringSchedulingIgnoredDuringExecution": st.fixed_dictionaries(
                    {
                        "nodeSelectorTerms": st.lists(
                            st.fixed_dictionaries(
                                {"matchExpressions": st.lists(requirements)},
                                optional={"matchFields": st.lists(requirements, max_size=2) | json_values},
                            )
                        )
                    }
                )
            }
        )
    }
)
tolerations = st.fixed_dictionaries(
    {},
    optional={
        "key": st.sampled_from(["gpupaas.io/dedicated", "other"]) | json_values,
        "operator": st.sampled_from(["Equal", "Exists", "Sometimes"]),
        "value": st.text(max_size=5),
        "effect": st.sampled_from(["NoSchedule", "NoExecute"]),
    },
)
pod_specs = st.fixed_dictionaries(
    {},
    optional={
        "containers": st.lists(containers, max_size=3) | json_values,
        "initContainers": st.lists(containers, max_size=2),
        "nodeSelector": st.dictionaries(label_keys, st.text(max_size=5) | json_values, max_size=2),
        "affinity": affinity | json_values,
        "tolerations": st.lists(tolerations, max_size=2),
        "priorityClassName": st.sampled_from(["gpupaas-spot", "system", ""]) | json_values,
        "nodeName": st.sampled_from(["eu-acme-1", "us-shared-1", "ghost", ""]) | json_values,
        "resourceClaims": st.lists(
            st.fixed_dictionaries({}, optional={"name": st.text(max_size=5) | json_values}) | json_values,
            max_size=2,
        )
        | json_values,
    },
)
counts = st.none() | st.integers(min_value=-1, max_value=5) | json_values


@st.composite
def workload_objects(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(SUPPORTED_KINDS)) | json_values)
    spec = draw(pod_specs)
    template = {"spec": spec}
    outer: Any
    if kind == "Pod":
        outer = spec
    elif kind == "CronJob":
        outer = {"jobTemplate": {"spec": {"template": template, "parallelism": draw(counts)}}}
    else:
        outer = {"template": template, "replicas": draw(counts), "parallelism": draw(counts)}
    metadata = draw(
        st.fixed_dictionaries({}, optional={"name": st.text(min_size=1, max_size=20)}) | json_values
    )
    return {"kind": kind, "metadata": metadata, "spec": draw(st.just(outer) | json_values)}


device_requests = st.fixed_dictionaries(
    {"name": st.text(max_size=4)},
    optional={
        "exactly": st.fixed_dictionaries(
            {},
            optional={
                "deviceClassName": st.sampled_from(["gpu.nvidia.com", "mig.nvidia.com", "nic.x"])
                | json_values,
                "count": counts,
                "allocationMode": st.sampled_from(["ExactCount", "All"]) | json_values,
            },
        )
        | json_values,
        "firstAvailable": st.lists(
            st.fixed_dictionaries(
                {}, optional={"deviceClassName": st.sampled_from(["gpu.amd.com", "x"]), "count": counts}
            ),
            max_size=2,
        )
        | json_values,
    },
)


@st.composite
def claim_objects(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["ResourceClaim", "ResourceClaimTemplate"]))
    claim_spec = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "devices": st.fixed_dictionaries(
                    {}, optional={"requests": st.lists(device_requests, max_size=3) | json_values}
                )
                | json_values
            },
        )
    )
    spec = claim_spec if kind == "ResourceClaim" else {"spec": claim_spec}
    metadata = draw(
        st.fixed_dictionaries({}, optional={"name": st.text(min_size=1, max_size=20) | json_values})
    )
    return {"kind": kind, "metadata": metadata, "spec": draw(st.just(spec) | json_values)}


@given(claim_objects())
def test_claim_translation_raises_only_its_own_errors_and_yields_valid_intents(obj: dict[str, Any]) -> None:
    try:
        workload = claim_workload(obj, "globex-ml")
    except InvalidObject:
        return
    validate_intent({"kind": "admit_workload", "admit_workload": workload})


@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_ever_raise_bad_review(raw: bytes) -> None:
    try:
        parse_review(raw)
    except BadReview as exc:
        assert exc.status == 400


@given(json_values)
def test_arbitrary_json_only_ever_raises_bad_review(doc: Any) -> None:
    with pytest.raises(BadReview):
        parse_review(json.dumps(doc).encode())


@given(
    st.fixed_dictionaries(
        {"apiVersion": st.just("admission.k8s.io/v1"), "kind": st.just("AdmissionReview")},
        optional={
            "request": st.fixed_dictionaries(
                {},
                optional={
                    "uid": st.text(max_size=5) | json_values,
                    "operation": st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"]) | json_values,
                    "object": json_values,
                    "namespace": json_values,
                    "name": json_values,
                    "kind": json_values,
                    "userInfo": json_values,
                    "dryRun": json_values,
                },
            )
            | json_values
        },
    )
)
def test_review_shaped_json_parses_or_raises_bad_review(doc: Any) -> None:
    try:
        request = parse_review(json.dumps(doc).encode())
    except BadReview:
        return
    assert request.uid and isinstance(request.namespace, str) and isinstance(request.name, str)


@given(workload_objects())
def test_workload_translation_raises_only_its_own_errors_and_yields_valid_intents(
    obj: dict[str, Any],
) -> None:
    try:
        workload = workload_from_object(obj, "globex-ml")
    except (InvalidObject, UnsupportedObject):
        return
    validate_intent({"kind": "admit_workload", "admit_workload": workload})


class NoEngine:
    """An engine that must not be needed for the property (its answer is a fixed DENY)."""

    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        return {"outcome": "DENY", "reasons": [{"code": "X", "message": "x", "policy": "p"}]}


@given(workload_objects() | claim_objects(), st.sampled_from(["globex-ml", "acme-prod", "Bad_NS", ""]))
def test_the_webhook_answers_every_object(obj: dict[str, Any], namespace: str) -> None:
    webhook = AdmissionWebhook(DecisionPoint(NoEngine()))
    doc = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u", "operation": "CREATE", "namespace": namespace, "object": obj},
    }
    response = webhook.review(json.dumps(doc).encode(), 1.0)["response"]
    assert response["uid"] == "u" and isinstance(response["allowed"], bool)


node_items = st.lists(
    st.fixed_dictionaries(
        {
            "metadata": st.fixed_dictionaries(
                {"name": st.text(min_size=1, max_size=6)}, optional={"labels": json_values}
            )
        }
    )
    | json_values,
    max_size=4,
)
extender_args = (
    st.fixed_dictionaries(
        {},
        optional={
            "Pod": st.builds(
                lambda obj, ns, uid: {**obj, "metadata": {"namespace": ns, "uid": uid, "name": "p"}},
                workload_objects(),
                st.sampled_from(["globex-ml", "acme-prod", "unowned", "Bad_NS"]) | json_values,
                st.text(max_size=4),
            )
            | json_values,
            "Nodes": st.fixed_dictionaries({"items": node_items}) | json_values,
            "NodeNames": st.lists(st.sampled_from(["eu-1", "us-1", "x"]), max_size=3) | json_values,
        },
    )
    | json_values
)


class Cluster:
    def node_labels(self, name: str) -> dict[str, str] | None:
        return labels("eu-west-1", "eu-h100-shared") if name.startswith("eu") else None

    def namespaces_on(self, node: str, exclude_pod_uid: str | None = None) -> list[str]:
        return ["acme-prod"] if node == "x" else []


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(extender_args)
def test_extender_filter_never_raises(stack: EmbeddedPDP, args: Any) -> None:
    extender = SchedulerExtender(DecisionPoint(stack.engine), Cluster())  # type: ignore[arg-type]
    result = extender.filter(args)
    assert set(result) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    if result["Error"]:
        assert result["Nodes"] is None and result["NodeNames"] is None
    else:
        assert (result["Nodes"] is None) != (result["NodeNames"] is None)
    assert isinstance(extender.prioritize(args), list)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(extender_args)
def test_extender_http_path_answers_what_filter_answers(stack: EmbeddedPDP, args: Any) -> None:
    # The HTTP path reads a body's nodes only for their names and labels (msgspec) and hands what
    # it does not expect to parse_args: the same answer, and the same 400 for what orjson refuses.
    try:
        body = orjson.dumps(args)  # integers beyond 64 bits: not a body kube-scheduler sends
    except orjson.JSONEncodeError:
        return
    point = DecisionPoint(stack.engine)
    fast = SchedulerExtender(point, Cluster())  # type: ignore[arg-type]
    whole = SchedulerExtender(point, Cluster())  # type: ignore[arg-type]
    assert orjson.loads(fast.filter_json(body)) == whole.filter(orjson.loads(body))
    assert orjson.loads(fast.prioritize_json(body)) == whole.prioritize(orjson.loads(body))

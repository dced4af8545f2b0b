"""The inference gateway's rendered objects (pdp/substrate/gateway) against the real CRDs of
Gateway API v1.6.3 and the Inference Extension v1.5.0 in a real kube-apiserver: every tier, with
and without the extension, is accepted (their OpenAPI schemas and CEL rules run there); objects the
CEL rules forbid are refused, so the check can fail; tenant isolation holds, including against a
tenant whose namespace or deployment names are crafted to collide with another's."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from pdp.substrate.gateway import apply as routes_apply
from pdp.substrate.gateway.admission import route_policy
from pdp.substrate.gateway.routes import TIERS, GatewayRef, RouteError, gateway_object, render
from pdp.substrate.kubernetes.adapter import KubernetesAdapter
from pdp.substrate.labels import TENANT_LABEL
from tests.e2e.controlplane import ControlPlane
from tests.e2e.gateway_crds import install_gateway_crds

GATEWAY = GatewayRef(name="inference", namespace="gpupaas-gateway", domain="models.example.com")
FLEET = {"gateway": {"name": GATEWAY.name, "namespace": GATEWAY.namespace, "domain": GATEWAY.domain}}


@pytest.fixture(scope="module")
def adapter(control_plane: ControlPlane, api: client.ApiClient) -> Iterator[KubernetesAdapter]:
    install_gateway_crds(api)
    core = client.CoreV1Api(api)
    for ns, tenant in (
        ("gpupaas-gateway", None),
        ("gw-acme", "acme"),
        ("gw-globex", "globex"),
        ("gw-a-b", "a-b"),
        ("gw-a", "a"),
    ):
        labels = {TENANT_LABEL: tenant} if tenant else None
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns, labels=labels)))
    a = KubernetesAdapter(api=api)
    a.apply(gateway_object(GATEWAY))
    yield a


def _stored(adapter: KubernetesAdapter, obj: dict[str, Any]) -> dict[str, Any]:
    found = adapter.get(obj)
    assert found is not None, f"{obj['kind']} {obj['metadata']['name']} not stored"
    return found


@pytest.mark.parametrize("tier", sorted(TIERS))
@pytest.mark.parametrize("extension", [True, False], ids=["inference-pool", "service-only"])
def test_every_rendered_object_is_accepted(adapter: KubernetesAdapter, tier: str, extension: bool) -> None:
    deployment = f"llm-{tier}-{'pool' if extension else 'svc'}"
    objs = render("acme", "gw-acme", deployment, tier, GATEWAY, inference_extension=extension)
    assert [o["kind"] for o in objs] == (
        ["Service", "InferencePool", "InferenceObjective", "HTTPRoute"]
        if extension
        else ["Service", "HTTPRoute"]
    )
    for obj in objs:
        adapter.apply(obj)
    stored = {o["kind"]: _stored(adapter, o) for o in objs}
    route = stored["HTTPRoute"]["spec"]
    assert route["hostnames"] == [f"{deployment}.acme.models.example.com"]
    assert route["rules"][0]["timeouts"] == {
        "request": TIERS[tier].request_timeout,
        "backendRequest": TIERS[tier].backend_timeout,
    }
    if extension:
        # Defaults from the real schema: the object went through the CRD's structural schema.
        assert stored["InferencePool"]["spec"]["appProtocol"] == "http"
        assert stored["InferenceObjective"]["spec"]["priority"] == TIERS[tier].priority
        assert route["rules"][0]["backendRefs"][0]["kind"] == "InferencePool"
    else:
        assert route["rules"][0]["backendRefs"][0] == {
            "group": "",
            "kind": "Service",
            "name": deployment,
            "port": 8000,
            "weight": 1,
        }
    for obj in objs:  # applying again changes nothing on the server
        before = stored[obj["kind"]]["metadata"]["resourceVersion"]
        adapter.apply(obj)
        assert _stored(adapter, obj)["metadata"]["resourceVersion"] == before


def test_a_deployment_name_starting_with_a_digit_is_accepted(adapter: KubernetesAdapter) -> None:
    """`7b-chat` is a valid deployment name but not a Service name (DNS-1035): the objects get a
    prefixed name the API server takes."""
    for obj in render("acme", "gw-acme", "7b-chat", "standard", GATEWAY):
        adapter.apply(obj)
        assert _stored(adapter, obj)["metadata"]["name"].startswith("d-7b-chat-")


def _refused(adapter: KubernetesAdapter, obj: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as info:
        adapter.apply(obj)
    assert info.value.status == 422, info.value.body
    return str(info.value.body)


def test_the_crds_validation_runs(adapter: KubernetesAdapter) -> None:
    """Objects the CRDs' CEL rules forbid are refused: the acceptance above is a real check."""
    route = render("acme", "gw-acme", "cel-route", "standard", GATEWAY)[-1]
    bad = copy.deepcopy(route)
    bad["spec"]["rules"][0]["timeouts"] = {"request": "10s", "backendRequest": "20s"}
    assert "backendRequest timeout cannot be longer than request timeout" in _refused(adapter, bad)
    pool = render("acme", "gw-acme", "cel-pool", "standard", GATEWAY)[1]
    bad = copy.deepcopy(pool)
    bad["spec"]["targetPorts"] = [{"number": 8000}, {"number": 8000}]
    assert "port number must be unique" in _refused(adapter, bad)


def _resolve(adapter: KubernetesAdapter, route: dict[str, Any]) -> list[dict[str, Any]]:
    """Each backend of a stored route, looked up the way a gateway resolves it."""
    ns = route["metadata"]["namespace"]
    out = []
    for rule in route["spec"]["rules"]:
        for ref in rule["backendRefs"]:
            target_ns = ref.get("namespace", ns)
            obj = {
                "apiVersion": "inference.networking.k8s.io/v1" if ref["kind"] == "InferencePool" else "v1",
                "kind": ref["kind"],
                "metadata": {"name": ref["name"], "namespace": target_ns},
            }
            out.append(_stored(adapter, obj))
    return out


def test_a_route_reaches_only_its_own_tenants_backend(adapter: KubernetesAdapter) -> None:
    """Two tenants with the same deployment name, and two (tenant, deployment) pairs whose
    concatenation is the same (`a-b`/`c` and `a`/`b-c`): every route's backends live in its own
    namespace and select only its own tenant's pods; no two routes share a hostname."""
    cases = [
        ("acme", "gw-acme", "llama"),
        ("globex", "gw-globex", "llama"),
        ("a-b", "gw-a-b", "c"),
        ("a", "gw-a", "b-c"),
    ]
    hostnames: dict[str, str] = {}
    for tenant, ns, deployment in cases:
        objs = routes_apply.apply(adapter, FLEET, tenant, ns, deployment, "enterprise")
        route = _stored(adapter, objs[-1])
        for host in route["spec"]["hostnames"]:
            assert host not in hostnames, f"{tenant}/{deployment} shares {host} with {hostnames[host]}"
            hostnames[host] = f"{tenant}/{deployment}"
        for backend in _resolve(adapter, route):
            assert backend["metadata"]["namespace"] == ns
            assert backend["metadata"]["labels"][TENANT_LABEL] == tenant
            selector = backend["spec"]["selector"]
            selector = selector.get("matchLabels", selector)
            assert selector[TENANT_LABEL] == tenant
        objective = _stored(adapter, objs[2])
        assert objective["metadata"]["namespace"] == ns and objective["spec"]["poolRef"]["name"] == deployment


def test_a_crafted_namespace_cannot_take_another_tenants_route(adapter: KubernetesAdapter) -> None:
    """Attack: tenant `mallory` is realized into acme's namespace (a tenant document that claims
    it past the tenancy policy) with acme's deployment name. The apply refuses before writing, and
    acme's route, pool and objective stay acme's."""
    routes_apply.apply(adapter, FLEET, "acme", "gw-acme", "victim", "enterprise")
    before = {
        o["kind"]: _stored(adapter, o) for o in render("acme", "gw-acme", "victim", "enterprise", GATEWAY)
    }
    with pytest.raises(RouteError, match=r"gw-acme/victim: owned by tenant 'acme', not 'mallory'"):
        routes_apply.apply(adapter, FLEET, "mallory", "gw-acme", "victim", "spot")
    with pytest.raises(RouteError, match="owned by tenant 'acme'"):
        routes_apply.delete(adapter, FLEET, "mallory", "gw-acme", "victim")
    for kind, obj in before.items():
        now = _stored(adapter, obj)
        assert now["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"], kind
        assert now["metadata"]["labels"][TENANT_LABEL] == "acme"


@pytest.mark.parametrize(
    ("tenant", "namespace", "deployment", "field"),
    [
        ("mallory", "gw-mallory", "x.acme", "deployment"),  # x.acme.mallory... would nest under acme
        ("acme.evil", "gw-acme", "llm", "tenant"),
        ("mallory", "gw-acme/../gw-globex", "llm", "namespace"),
        ("mallory", "gw-mallory", "LLM", "deployment"),
    ],
)
def test_crafted_names_are_refused_naming_the_field(
    tenant: str, namespace: str, deployment: str, field: str
) -> None:
    with pytest.raises(RouteError, match=rf"^{field}: .* is not a DNS label"):
        render(tenant, namespace, deployment, "standard", GATEWAY)


def test_routes_follow_the_route_delete(adapter: KubernetesAdapter) -> None:
    objs = routes_apply.apply(adapter, FLEET, "globex", "gw-globex", "gone", "spot")
    routes_apply.delete(adapter, FLEET, "globex", "gw-globex", "gone")
    assert all(adapter.get(o) is None for o in objs)
    assert routes_apply.apply(adapter, {}, "globex", "gw-globex", "none", "spot") == []


def _wait_refused(adapter: KubernetesAdapter, obj: dict[str, Any], timeout: float = 30) -> str:
    """The message of the refusal of `obj`, retried until the admission policy is in force (the API
    server loads a new policy asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            adapter.apply(obj)
        except ApiException as exc:
            if exc.status in (403, 422):
                return str(json.loads(exc.body)["message"])
            raise
        adapter.delete(obj)
        assert time.monotonic() < deadline, f"{obj['metadata']['name']} still admitted after {timeout} s"
        time.sleep(0.2)


def test_tenant_written_routes_cannot_reach_another_tenant(
    api: client.ApiClient, adapter: KubernetesAdapter
) -> None:
    """Attack: acme writes HTTPRoutes of its own in its namespace (its admin role allows it). The
    API server's admission policy refuses one that claims globex's hostname, one without hostnames
    (it would take every hostname of the listener) and one whose backend is in globex's
    namespace; the routes the platform renders still pass."""
    admission = client.AdmissionregistrationV1Api(api)
    policy, binding = route_policy(GATEWAY)
    admission.create_validating_admission_policy(policy)
    admission.create_validating_admission_policy_binding(binding)
    own = render("acme", "gw-acme", "mine", "standard", GATEWAY)[-1]

    steal = copy.deepcopy(own)
    steal["metadata"]["name"] = "steal-hostname"
    steal["spec"]["hostnames"] = ["llama.globex.models.example.com"]
    body = _wait_refused(adapter, steal)
    assert "namespace of tenant acme must be <deployment>.acme.models.example.com" in body

    nested = copy.deepcopy(steal)
    nested["spec"]["hostnames"] = ["x.acme.globex.models.example.com"]  # one label too many
    assert "must be <deployment>.acme" in _wait_refused(adapter, nested)

    everything = copy.deepcopy(own)
    everything["metadata"]["name"] = "every-hostname"
    del everything["spec"]["hostnames"]
    assert "must name its hostnames" in _wait_refused(adapter, everything)

    cross = copy.deepcopy(own)
    cross["metadata"]["name"] = "cross-namespace"
    cross["spec"]["rules"][0]["backendRefs"] = [
        {"kind": "Service", "name": "llama", "namespace": "gw-globex", "port": 8000}
    ]
    assert "only reference backends in its own namespace" in _wait_refused(adapter, cross)

    for tenant, ns, deployment in (
        ("acme", "gw-acme", "mine"),
        ("globex", "gw-globex", "llama"),
        ("a", "gw-a", "b-c"),
    ):
        for obj in render(tenant, ns, deployment, "spot", GATEWAY):
            adapter.apply(obj)  # the platform's own routes are admitted

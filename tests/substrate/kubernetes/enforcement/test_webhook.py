"""The admission webhook over real HTTPS, deciding with the real OPA on the example tenants."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pdp.embedded import EmbeddedPDP
from pdp.net.durations import parse_go_duration
from pdp.point import DecisionPoint
from pdp.substrate.kubernetes.enforcement.webhook import AdmissionWebhook, WebhookServer
from tests.substrate.kubernetes.enforcement.conftest import (
    H100,
    CountingEngine,
    body,
    labels,
    opa_stopped,
    own_pool,
    pod,
    review,
)
from tests.substrate.kubernetes.enforcement.extender.test_scheduler_extender import FakeCluster


class Client:
    def __init__(self, server: WebhookServer, cert: Path) -> None:
        context = ssl.create_default_context(cafile=str(cert))
        self.conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=context, timeout=10)

    def post(self, raw: bytes, path: str = "/validate?timeout=10s") -> tuple[int, Any]:
        self.conn.request("POST", path, raw, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        return response.status, json.loads(response.read())

    def review(self, obj: dict[str, Any], namespace: str, path: str = "/validate?timeout=10s") -> Any:
        status, doc = self.post(body(review(obj, namespace, uid=f"uid-{namespace}")), path)
        assert status == 200, doc
        assert doc["apiVersion"] == "admission.k8s.io/v1" and doc["kind"] == "AdmissionReview"
        assert doc["response"]["uid"] == f"uid-{namespace}"
        return doc["response"]


@pytest.fixture()
def server(point: DecisionPoint, tls_files: tuple[Path, Path]) -> Iterator[WebhookServer]:
    cert, key = tls_files
    with WebhookServer(AdmissionWebhook(point), cert_file=cert, key_file=key, max_body=64 * 1024) as running:
        yield running


@pytest.fixture()
def client(server: WebhookServer, tls_files: tuple[Path, Path]) -> Client:
    return Client(server, tls_files[0])


def test_eu_tenant_pinned_to_a_us_region_is_denied_with_the_residency_reason(client: Client) -> None:
    obj = pod(
        limits={"nvidia.com/gpu": "1"},
        node_selector={"topology.kubernetes.io/region": "us-east-1"},
        tolerations=own_pool("acme-eu"),
    )
    response = client.review(obj, "acme-prod")
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    message = response["status"]["message"]
    assert message.startswith("gpupaas denied Pod acme-prod/llama-0: [RESIDENCY_VIOLATION]")
    assert "tenant acme-eu" in message
    annotations = response["auditAnnotations"]
    assert annotations["decision-id"] and annotations["outcome"] == "DENY" and annotations["bundle-revision"]
    assert annotations["decision-id"] in message


def test_shared_gpus_follow_the_tenants_sharing_policy(client: Client) -> None:
    shared = pod(limits={"nvidia.com/gpu.shared": "1"})
    assert client.review(shared, "globex-ml")["allowed"] is True
    denied = client.review(
        pod(limits={"nvidia.com/gpu.shared": "1"}, tolerations=own_pool("acme-eu")), "acme-prod"
    )
    assert denied["allowed"] is False and "[SHARING_NOT_ALLOWED]" in denied["status"]["message"]


def test_spot_tenant_cannot_use_the_enterprise_priority_class(client: Client) -> None:
    response = client.review(
        pod(limits={"nvidia.com/gpu": "1"}, priority_class="gpupaas-enterprise"), "initech-batch"
    )
    assert response["allowed"] is False and "[PRIORITY_CLASS_ABOVE_TIER]" in response["status"]["message"]


def test_deployment_replicas_count_against_the_entitlement(client: Client) -> None:
    template = pod(limits={"nvidia.com/gpu": "2"}, node_selector={"nvidia.com/gpu.product": H100})
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "llama", "namespace": "acme-prod"},
        "spec": {"replicas": 3, "template": {"spec": template["spec"]}},
    }
    response = client.review(deployment, "acme-prod")
    assert response["allowed"] is False
    assert (
        "gpupaas denied Deployment acme-prod/llama: [ENTITLEMENT_EXCEEDED]" in response["status"]["message"]
    )
    deployment["spec"]["replicas"] = 2
    assert "[ENTITLEMENT_EXCEEDED]" not in json.dumps(client.review(deployment, "acme-prod"))


def test_unknown_namespace_is_the_policys_tenant_unknown(client: Client) -> None:
    response = client.review(pod(limits={"nvidia.com/gpu": "1"}), "unowned")
    assert response["allowed"] is False and "[TENANT_UNKNOWN]" in response["status"]["message"]


def test_objects_needing_no_policy_pass_without_an_engine_call(
    client: Client, counting: CountingEngine
) -> None:
    before = counting.calls
    response = client.review(pod(node_selector={"kubernetes.io/os": "linux"}), "acme-prod")
    assert response["allowed"] is True and "status" not in response
    assert counting.calls == before
    client.review(pod(limits={"nvidia.com/gpu": "1"}), "globex-ml")
    assert counting.calls == before + 1


def test_invalid_objects_get_a_reasoned_400_denial(client: Client, counting: CountingEngine) -> None:
    response = client.review(pod(limits={"nvidia.com/gpu": "1.5"}), "globex-ml")
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert (
        'spec.containers[0].resources.limits["nvidia.com/gpu"]: "1.5" is not a whole number'
        in (response["status"]["message"])
    )
    bad_namespace = client.review(pod(limits={"nvidia.com/gpu": "1"}), "Not_A_Namespace")
    assert bad_namespace["allowed"] is False and bad_namespace["status"]["code"] == 400
    assert "admit_workload.namespace" in bad_namespace["status"]["message"]
    assert counting.calls == 0


def test_delete_is_allowed_without_policy(client: Client, counting: CountingEngine) -> None:
    status, doc = client.post(body(review(None, "acme-prod", uid="del", operation="DELETE")))
    assert status == 200 and doc["response"] == {"uid": "del", "allowed": True}
    assert counting.calls == 0


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"{not json", "not JSON"),
        (
            body({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}),
            "request.uid",
        ),
        (body({**review(pod(), "ns"), "apiVersion": "admission.k8s.io/v1beta1"}), "apiVersion"),
    ],
)
def test_malformed_reviews_are_400(client: Client, raw: bytes, needle: str) -> None:
    status, doc = client.post(raw)
    assert status == 400 and needle in doc["error"]


def test_http_robustness(server: WebhookServer, client: Client, tls_files: tuple[Path, Path]) -> None:
    status, doc = client.post(b"x" * (64 * 1024 + 1))
    assert status == 413 and "limit" in doc["error"]
    fresh = Client(server, tls_files[0])
    assert fresh.post(body(review(pod(), "ns")), path="/mutate")[0] == 404
    fresh = Client(server, tls_files[0])
    fresh.conn.putrequest("POST", "/validate")
    fresh.conn.endheaders()
    assert fresh.conn.getresponse().status == 411
    fresh = Client(server, tls_files[0])
    fresh.conn.request("GET", "/validate")
    assert fresh.conn.getresponse().status == 405
    fresh = Client(server, tls_files[0])
    fresh.conn.request("GET", "/healthz")
    response = fresh.conn.getresponse()
    assert response.status == 200 and json.loads(response.read()) == {"status": "ok"}
    # keep-alive: the same connection answers again
    fresh.conn.request("GET", "/healthz")
    assert fresh.conn.getresponse().status == 200


def test_only_tls(server: WebhookServer) -> None:
    plain = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        plain.request("GET", "/healthz")
        plain.getresponse()
    assert server.url == f"https://127.0.0.1:{server.port}"


def test_a_stalled_client_does_not_block_others(server: WebhookServer, client: Client) -> None:
    with socket.create_connection(("127.0.0.1", server.port)):  # no TLS handshake at all
        status, doc = client.post(body(review(pod(), "acme-prod")))
        assert status == 200 and doc["response"]["allowed"] is True


def test_a_broken_engine_is_a_reasoned_denial_not_a_crash(tls_files: tuple[Path, Path]) -> None:
    class Broken:
        def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
            raise RuntimeError("boom")

    cert, key = tls_files
    with WebhookServer(AdmissionWebhook(DecisionPoint(Broken())), cert_file=cert, key_file=key) as server:
        client = Client(server, cert)
        status, doc = client.post(body(review(pod(limits={"nvidia.com/gpu": "1"}), "globex-ml")))
        assert status == 200 and doc["response"]["allowed"] is False
        assert "ENGINE_ERROR" in doc["response"]["status"]["message"]
        assert "RuntimeError: boom" in doc["response"]["status"]["message"]
        status, _ = client.post(body(review(pod(), "globex-ml")))
        assert status == 200


def test_a_stopped_server_also_ends_keep_alive_connections(server: WebhookServer, client: Client) -> None:
    # The API server keeps webhook connections open; a stopped PDP must stop answering on them
    # too, or "PDP down" would silently keep admitting through an old connection.
    status, _ = client.post(body(review(pod(), "acme-prod")))
    assert status == 200
    server.stop()
    with pytest.raises((OSError, http.client.HTTPException)):
        client.post(body(review(pod(), "acme-prod")))


def test_go_durations() -> None:
    assert parse_go_duration("10s") == 10
    assert parse_go_duration("500ms") == 0.5
    assert parse_go_duration("1m30s") == 90
    assert parse_go_duration("1.5s") == 1.5
    assert (
        parse_go_duration("") is None and parse_go_duration("ten") is None and parse_go_duration("5") is None
    )


def test_the_api_servers_timeout_is_honoured_when_opa_hangs(stack: EmbeddedPDP, client: Client) -> None:
    obj = pod(limits={"nvidia.com/gpu": "1"})
    client.review(obj, "globex-ml")  # warm the engine's connection
    with opa_stopped(stack):
        started = time.monotonic()
        response = client.review(obj, "globex-ml", path="/validate?timeout=1s")
        elapsed = time.monotonic() - started
    assert response["allowed"] is False
    assert (
        "[ENGINE_TIMEOUT]" in response["status"]["message"]
        and "failing closed" in response["status"]["message"]
    )
    assert elapsed < 1.0, elapsed


def test_open_non_gpu_admits_only_non_gpu_objects_on_engine_failure(
    stack: EmbeddedPDP, point: DecisionPoint
) -> None:
    webhook = AdmissionWebhook(point, failure_mode="open-non-gpu")
    regional = body(review(pod(node_selector={"topology.kubernetes.io/region": "eu-west-1"}), "acme-prod"))
    gpu = body(review(pod(limits={"nvidia.com/gpu": "1"}, tolerations=own_pool("acme-eu")), "acme-prod"))
    with opa_stopped(stack):
        plain = webhook.review(regional, 0.3)["response"]
        denied = webhook.review(gpu, 0.3)["response"]
    assert plain["allowed"] is True and "fail-open" in plain["warnings"][0]
    assert denied["allowed"] is False and "[ENGINE_TIMEOUT]" in denied["status"]["message"]
    with pytest.raises(ValueError, match="failure mode"):
        AdmissionWebhook(point, failure_mode="open")


def test_a_pod_naming_its_node_is_judged_against_that_node(
    point: DecisionPoint, counting: CountingEngine
) -> None:
    view = FakeCluster(
        {
            "us-1": labels("us-east-1", "us-h100-shared"),
            "eu-1": labels("eu-west-1", "acme-h100-dedicated", "acme-eu"),
        },
        {"eu-1": [("other", "acme-prod")]},
    )
    webhook = AdmissionWebhook(point, cluster=view)
    pinned = pod(limits={"nvidia.com/gpu": "1"}, tolerations=own_pool("acme-eu"))
    pinned["spec"]["nodeName"] = "us-1"
    response = webhook.review(body(review(pinned, "acme-prod")))["response"]
    assert response["allowed"] is False
    assert "RESIDENCY_VIOLATION" in response["status"]["message"] and "us-1" in response["status"]["message"]

    pinned["spec"]["nodeName"] = "eu-1"
    assert webhook.review(body(review(pinned, "acme-prod")))["response"]["allowed"] is True

    foreign = pod(limits={"nvidia.com/gpu": "1"})
    foreign["spec"]["nodeName"] = "eu-1"
    response = webhook.review(body(review(foreign, "globex-ml")))["response"]
    assert response["allowed"] is False and "ISOLATION_FOREIGN_POOL" in response["status"]["message"]


def test_responses_are_not_held_back_by_nagle(server: WebhookServer, client: Client) -> None:
    # A response is two writes (headers, then body); without TCP_NODELAY the body waited for the
    # client's delayed ACK, about 40 ms on every keep-alive request (webhook capacity 295/s before,
    # 518/s after, docs/performance.md).
    status, _ = client.post(body(review(pod(), "acme-prod")))
    assert status == 200
    (conn,) = server._http.open_sockets()  # the client's keep-alive connection
    assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)

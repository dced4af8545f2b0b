"""Malformed requests to the product API are 4xx answers naming the problem, never a 500."""

from __future__ import annotations

import pytest

from tests.lifecycle.harness import Worker

# Every route that takes a body, with a path whose objects need not exist: validation comes first.
BODY_ROUTES = [
    "/v1/tenants",
    "/v1/tenants/acme-eu/deployments",
    "/v1/tenants/acme-eu/deployments/d/scale",
    "/v1/tenants/acme-eu/deployments/d/batch-size",
    "/v1/tenants/acme-eu/gpu-sharing",
    "/v1/tenants/acme-eu/quotas",
    "/v1/tenants/acme-eu/sla",
    "/v1/tenants/acme-eu/offboard",
    "/v1/capacity/exhaustion",
    "/v1/capacity/retry",
    "/v1/approvals/a-1",
]
NOT_UTF8 = b"\xff\xfe\x80 not text \xc3\x28"


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize("content_type", ["text/plain", "application/octet-stream", None])
def test_a_body_that_is_not_json_is_422_naming_the_problem(
    worker: Worker, route: str, content_type: str | None
) -> None:
    # A non-UTF-8 body with a non-JSON content type was a 500 on these routes: FastAPI's handler
    # tried to echo the raw bytes as text.
    headers = {"Content-Type": content_type} if content_type else {}
    with worker.client() as client:
        response = client.post(route, content=NOT_UTF8, headers=headers)
    assert response.status_code == 422, (response.status_code, response.text)
    detail = response.json()["errors"]
    assert detail[0]["loc"] == ["body"]
    assert "JSON" in detail[0]["msg"], detail


def test_a_json_body_with_the_wrong_shape_names_the_field(worker: Worker) -> None:
    with worker.client() as client:
        response = client.post("/v1/tenants/acme-eu/quotas", json={"entitlements": {"H100-80GB": "x" * 5000}})
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["loc"] == ["body", "entitlements", "H100-80GB"]
    assert len(response.text) < 2000  # the refused value is echoed shortened, not whole


def test_json_that_does_not_parse_is_422(worker: Worker) -> None:
    with worker.client() as client:
        response = client.post(
            "/v1/tenants/acme-eu/quotas",
            content=b'{"entitlements": ',
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("runtime", "gpu_class", "message"),
    [
        ("triton", "MI300X", "runtime: runtime 'triton' has no image for amd GPUs"),
        ("onnx", "H100-80GB", "runtime: runtime 'onnx' is not one of vllm, tgi, triton"),
    ],
)
def test_a_model_server_that_cannot_serve_the_deployment_is_422_naming_the_runtime(
    worker: Worker, runtime: str, gpu_class: str, message: str
) -> None:
    body = {
        "deployment": "chat",
        "gpu_class": gpu_class,
        "gpus_per_replica": 1,
        "replicas": 1,
        "runtime": runtime,
    }
    with worker.client() as client:
        response = client.post("/v1/tenants/globex/deployments", json=body)
    assert response.status_code == 422, response.text
    assert message in response.text
    with worker.client() as client:
        assert client.get("/v1/tenants/globex/deployments").json() == []

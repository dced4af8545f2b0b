"""Fuzzing every product API route with schemathesis, from the app's own OpenAPI document, against
a real lifecycle worker (embedded PDP, DBOS, dry-run adapter): no 5xx, no hang, and input that
violates the schema is refused with a 4xx, never accepted (202) into a workflow."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import event, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from pdp.product.app import create_app
from tests.fuzz.strategies import EXAMPLES, FUZZ, HANG
from tests.lifecycle.harness import Worker

OPENAPI = create_app().openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
# Twenty-odd routes share the budget of one target.
PER_ROUTE = max(EXAMPLES // 30, 3)


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    running = Worker(tmp_path_factory.mktemp("product-api-fuzz")).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(worker: Worker) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=worker.url, timeout=HANG) as c:
        yield c


def test_the_worker_serves_the_document_the_fuzzer_reads(worker: Worker) -> None:
    assert httpx.get(f"{worker.url}/openapi.json", timeout=HANG).json() == OPENAPI


@schema.parametrize()
@settings(FUZZ, max_examples=PER_ROUTE)
def test_product_api_routes(case: schemathesis.Case, worker: Worker) -> None:
    response = case.call(
        base_url=worker.url, headers={"Authorization": f"Bearer {worker.admin_token}"}, timeout=HANG
    )
    case.validate_response(
        response,
        checks=[schemathesis.checks.not_a_server_error, schemathesis.checks.negative_data_rejection],
    )


BODY_ROUTES = sorted(
    (path, method.upper())
    for path, item in OPENAPI["paths"].items()
    for method, operation in item.items()
    if "requestBody" in operation
)
content_types = st.none() | st.sampled_from(
    ["application/json", "text/plain", "application/octet-stream", "application/x-www-form-urlencoded",
     "multipart/form-data; boundary=x", "application/merge-patch+json", "application/json; charset=latin-1"]
) | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30)  # fmt: skip
bodies = st.binary(max_size=200) | st.sampled_from(
    [b'{"entitlements": {"H100-80GB": 4}}', b'{"tenant": {"name": "x"}}', b"\xff\xfe\x80", b"[]", b"null"]
)


@FUZZ
@given(route=st.sampled_from(BODY_ROUTES), content_type=content_types, body=bodies)
def test_any_body_with_any_content_type(
    worker: Worker, client: httpx.Client, route: tuple[str, str], content_type: str | None, body: bytes
) -> None:
    # schemathesis sends what the document declares (JSON); clients send whatever they like.
    path, method = route
    url = path.replace("{tenant}", "acme-eu").replace("{name}", "d").replace("{approval_id}", "a-1")
    headers = {"Authorization": f"Bearer {worker.admin_token}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = client.request(method, url, content=body, headers=headers)
    event(f"HTTP {response.status_code}")
    assert response.status_code < 500, (route, content_type, body, response.text)
    assert response.status_code != 202 or content_type is None or "json" in content_type, response.text

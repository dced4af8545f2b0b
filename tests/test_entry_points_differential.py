"""Every entry point gives the same decision document: the embedded DecisionPoint, gRPC Decide and
HTTP POST /v1/decide (and their batch forms), for every example intent and every policy sample.

Only what names one evaluation differs by design (decision_id, decided_at, evaluation_ms). The
gRPC reply is read back with `decision_from_proto`, which leaves out empty fields (proto3 has no
presence for them), so empty lists, maps and strings are dropped from all three before comparing;
and the gRPC Decision message has no `kind` (the caller sent it), so that key is compared only
between the embedded point and HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pdp.api.http_server import HttpDecisionServer
from pdp.api.server import PdpServer
from pdp.client import PdpClient
from pdp.embedded import EmbeddedPDP
from pdp.point import DecideOptions

from .conftest import EXAMPLES, ROOT

PER_EVALUATION = ("decision_id", "decided_at", "evaluation_ms")


def _corpus() -> list[tuple[str, dict[str, Any]]]:
    cases = [(p.name, json.loads(p.read_text())) for p in sorted((EXAMPLES / "intents").glob("*.json"))]
    for path in sorted((ROOT / "policies").glob("**/samples/*.json")):
        sample = json.loads(path.read_text())[path.stem]
        cases.append((f"{path.parent.parent.name}/{path.stem}", sample["input"]))
    return cases


CORPUS = _corpus()


def _pruned(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [], "", None)}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def comparable(doc: dict[str, Any]) -> Any:
    return _pruned({k: v for k, v in doc.items() if k not in PER_EVALUATION})


@pytest.fixture(scope="module")
def grpc_client(stack: EmbeddedPDP) -> Iterator[PdpClient]:
    server = PdpServer(stack.point, listen="127.0.0.1:0").start()
    with PdpClient(server.address, timeout=10) as client:
        yield client
    server.stop()


@pytest.fixture(scope="module")
def http_client(stack: EmbeddedPDP) -> Iterator[httpx.Client]:
    with (
        HttpDecisionServer(stack.point, default_timeout=10) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        yield client


def test_the_corpus_covers_every_example_and_sample() -> None:
    samples = list((ROOT / "policies").glob("**/samples/*.json"))
    assert len(CORPUS) == len(list((EXAMPLES / "intents").glob("*.json"))) + len(samples)
    assert len(samples) >= 20
    assert {doc["kind"] for _, doc in CORPUS} >= {"deploy_model", "admit_workload", "place_workload"}


@pytest.mark.parametrize(("name", "intent"), CORPUS, ids=[name for name, _ in CORPUS])
def test_embedded_grpc_and_http_decide_alike(
    stack: EmbeddedPDP, grpc_client: PdpClient, http_client: httpx.Client, name: str, intent: dict[str, Any]
) -> None:
    embedded = stack.point.decide(intent, DecideOptions(timeout=10, record=False)).to_dict()
    over_grpc = grpc_client.decide(intent)
    response = http_client.post("/v1/decide", json=intent)
    assert response.status_code == 200, response.text
    over_http = response.json()
    # HTTP is the document itself, key for key (only the per-evaluation values differ).
    assert set(over_http) == set(embedded)
    assert {k: v for k, v in over_http.items() if k not in PER_EVALUATION} == {
        k: v for k, v in embedded.items() if k not in PER_EVALUATION
    }
    # gRPC too, key for key: kind and empty collections included (issue 11).
    assert {k: v for k, v in over_grpc.items() if k not in PER_EVALUATION} == {
        k: v for k, v in embedded.items() if k not in PER_EVALUATION
    }


def test_batches_decide_alike(stack: EmbeddedPDP, grpc_client: PdpClient, http_client: httpx.Client) -> None:
    intents = [intent for _, intent in CORPUS]
    options = DecideOptions(timeout=30, record=False)
    embedded = [d.to_dict() for d in stack.point.decide_batch(intents, options)]
    over_grpc = grpc_client.decide_batch(intents, timeout=30)
    response = http_client.post("/v1/decide/batch", json={"intents": intents}, params={"timeout": "30s"})
    assert response.status_code == 200
    over_http = response.json()["decisions"]
    assert [comparable(d) for d in over_http] == [comparable(d) for d in embedded]
    assert [{k: v for k, v in d.items() if k not in PER_EVALUATION} for d in over_grpc] == [
        {k: v for k, v in d.items() if k not in PER_EVALUATION} for d in embedded
    ]

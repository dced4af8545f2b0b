"""Every entry point gives the same decision document: the embedded DecisionPoint, gRPC Decide and
HTTP POST /v1/decide (and their batch forms), `pdp decide` (one-shot and --server) and the
lifecycle's decide path, for every example intent, every policy sample and generated intents.

Only what names one evaluation differs by design (decision_id, decided_at, evaluation_ms). The
gRPC reply is read back with `decision_from_proto`, which leaves out empty fields (proto3 has no
presence for them), so empty lists, maps and strings are dropped from all three before comparing;
and the gRPC Decision message has no `kind` (the caller sent it), so that key is compared only
between the embedded point and HTTP.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdp.api.client import PdpClient
from pdp.api.http_server import HttpDecisionServer
from pdp.api.server import PdpServer
from pdp.commands.output import EXIT_STATUS
from pdp.embedded import EmbeddedPDP
from pdp.point import DecideOptions
from tests.conftest import EXAMPLES, ROOT
from tests.engine import test_engine_differential as generated

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


# --- the command line and the lifecycle --------------------------------------------------------
#
# `pdp decide FILE` (the one-shot: the wasm engine in-process, on a bundle built from the same
# documents), `pdp decide --server` (gRPC to the PDP under test) and the lifecycle's gateway
# (`PolicyGateway.decide`, which every lifecycle decision and the console's preview go through).
# The example intents run the real command in a subprocess; the policy samples and generated
# intents drive `pdp.cli.main` in-process (a subprocess costs a quarter of a second of start-up
# each, and would test the interpreter's start-up a few hundred times over).


@pytest.fixture(scope="module")
def oneshot_args(stack: EmbeddedPDP, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Options that make `pdp decide` build from the stack's documents, with a warm cache."""
    from pdp.oneshot import decide_once

    root = stack.settings.tenants.parent.parent
    state = tmp_path_factory.mktemp("oneshot-state")
    args = [
        *("--tenants", str(stack.settings.tenants), "--fleet", str(stack.settings.fleet)),
        *("--policies", str(stack.settings.policies), "--keys", str(stack.settings.keys)),
        *("--bundles", str(root / "oneshot-bundles"), "--state", str(state)),
    ]
    warm = decide_once(stack.settings.replace(state=state, decision_log=None), CORPUS[0][1])
    assert stack.bundle is not None and warm.revision == stack.bundle.revision
    return args


@pytest.fixture(scope="module")
def grpc_address(stack: EmbeddedPDP) -> Iterator[str]:
    server = PdpServer(stack.point, listen="127.0.0.1:0").start()
    yield server.address
    server.stop()


@pytest.fixture(scope="module")
def gateway(stack: EmbeddedPDP) -> Any:
    from pdp.lifecycle.policy import PolicyGateway

    return PolicyGateway(stack, timeout=10)


def _pdp_decide(argv: list[str], intent: Any, tmp: Path) -> tuple[int, dict[str, Any]]:
    """`pdp decide` through main(), in-process: its exit status and the document it printed."""
    from pdp.cli import main

    source = tmp / "intent.json"
    source.write_text(json.dumps(intent))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        status = main(["decide", *argv, str(source)])
    return status, json.loads(out.getvalue())


def _pdp_decide_process(argv: list[str], source: Path) -> tuple[int, dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "decide", *argv, str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode in EXIT_STATUS.values(), out.stderr
    return out.returncode, json.loads(out.stdout)


def _same(doc: dict[str, Any], reference: dict[str, Any]) -> None:
    """Key for key, empty collections included; only what names one evaluation may differ."""
    assert {k: v for k, v in doc.items() if k not in PER_EVALUATION} == {
        k: v for k, v in reference.items() if k not in PER_EVALUATION
    }


EXAMPLE_FILES = sorted((EXAMPLES / "intents").glob("*.json"))
SAMPLES = CORPUS[len(EXAMPLE_FILES) :]


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.name)
def test_the_pdp_decide_command_and_the_lifecycle_decide_alike(
    stack: EmbeddedPDP, oneshot_args: list[str], grpc_address: str, gateway: Any, example: Path
) -> None:
    intent = json.loads(example.read_text())
    embedded = stack.point.decide(intent, DecideOptions(timeout=10, record=False)).to_dict()
    status, one_shot = _pdp_decide_process(oneshot_args, example)
    _same(one_shot, embedded)
    assert status == EXIT_STATUS[embedded["outcome"]]
    status, served = _pdp_decide_process(["--server", grpc_address, "--timeout", "10"], example)
    _same(served, embedded)
    assert status == EXIT_STATUS[embedded["outcome"]]
    _same(gateway.decide(intent), embedded)


@pytest.mark.parametrize(("name", "intent"), SAMPLES, ids=[name for name, _ in SAMPLES])
def test_policy_samples_decide_alike_from_main_and_the_lifecycle(
    stack: EmbeddedPDP,
    oneshot_args: list[str],
    grpc_address: str,
    gateway: Any,
    tmp_path: Path,
    name: str,
    intent: dict[str, Any],
) -> None:
    embedded = stack.point.decide(intent, DecideOptions(timeout=10, record=False)).to_dict()
    for argv in (oneshot_args, ["--server", grpc_address, "--timeout", "10"]):
        status, doc = _pdp_decide(argv, intent, tmp_path)
        _same(doc, embedded)
        assert status == EXIT_STATUS[embedded["outcome"]]
    _same(gateway.decide(intent), embedded)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(intent=st.one_of(generated.deploy, generated.admit, generated.place, generated.scale))
def test_generated_intents_decide_alike_everywhere(
    stack: EmbeddedPDP,
    oneshot_args: list[str],
    grpc_address: str,
    grpc_client: PdpClient,
    http_client: httpx.Client,
    gateway: Any,
    tmp_path_factory: pytest.TempPathFactory,
    intent: dict[str, Any],
) -> None:
    embedded = stack.point.decide(intent, DecideOptions(timeout=10, record=False)).to_dict()
    _same(grpc_client.decide(intent), embedded)
    response = http_client.post("/v1/decide", json=intent)
    assert response.status_code == 200, response.text
    _same(response.json(), embedded)
    tmp = tmp_path_factory.mktemp("generated", numbered=True)
    for argv in (oneshot_args, ["--server", grpc_address, "--timeout", "10"]):
        status, doc = _pdp_decide(argv, intent, tmp)
        _same(doc, embedded)
        assert status == EXIT_STATUS[embedded["outcome"]]
    _same(gateway.decide(intent), embedded)

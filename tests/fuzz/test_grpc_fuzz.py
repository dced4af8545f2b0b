"""Fuzzing gRPC Decide and DecideBatch on a real server over the real OPA: corrupted bytes and
mutated intents get a decision or INVALID_ARGUMENT, never another status, never a hang, and an
ALLOW only for an intent that validates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import DecodeError
from hypothesis import event, given
from hypothesis import strategies as st

from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
from pdp.api.server import SERVICE_NAME, PdpServer
from pdp.api.translate import intent_from_proto, intent_to_proto
from pdp.embedded import EmbeddedPDP
from pdp.intents import InvalidIntent, validate_intent
from tests.conftest import EXAMPLES as EXAMPLES_DIR
from tests.conftest import load_intent
from tests.fuzz.strategies import FUZZ, HANG, corrupted, mutated

INTENTS = [load_intent(p.name) for p in sorted((EXAMPLES_DIR / "intents").glob("*.json"))]
KNOWN_TENANTS = {"acme-eu", "globex", "initech-spot"}
# Kinds that act for the tenant they name: for a tenant nobody onboarded, never an ALLOW.
TENANT_KINDS = {"deploy_model", "scale", "change_batch_size", "request_gpu_sharing", "update_quotas"}


@pytest.fixture(scope="module")
def server(stack: EmbeddedPDP) -> Iterator[PdpServer]:
    running = PdpServer(stack.point, listen="127.0.0.1:0", engine_ready=stack.engine_ready).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def channel(server: PdpServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as ch:
        yield ch


def raw_call(channel: grpc.Channel, method: str, data: bytes) -> tuple[grpc.StatusCode, bytes | str]:
    """Send `data` as the request body as it is, bypassing the client's serializer."""
    call = channel.unary_unary(f"/{SERVICE_NAME}/{method}")
    try:
        return grpc.StatusCode.OK, call(data, timeout=HANG)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""


def valid_locally(intent: pb.Intent) -> bool:
    try:
        validate_intent(intent_from_proto(intent))
    except InvalidIntent:
        return False
    return True


def check_reply(status: grpc.StatusCode, reply: bytes | str, intents: list[pb.Intent] | None) -> None:
    """OK with decisions or INVALID_ARGUMENT, nothing else; ALLOW only for intents that validate."""
    assert status in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), (status, reply)
    event(status.name)
    if status is not grpc.StatusCode.OK:
        assert reply, "INVALID_ARGUMENT without details"
        return
    assert isinstance(reply, bytes) and intents is not None
    decisions = pb.DecideBatchResponse.FromString(reply).decisions
    assert len(decisions) == len(intents)
    for decision, intent in zip(decisions, intents, strict=True):
        event(pb.Outcome.Name(decision.outcome))
        if decision.outcome == pb.ALLOW:
            assert valid_locally(intent), intent
            if intent.WhichOneof("action") in TENANT_KINDS:
                assert intent.tenant in KNOWN_TENANTS, intent


BLOBS = [pb.DecideRequest(intent=intent_to_proto(i)).SerializeToString() for i in INTENTS]
BATCH_BLOBS = [pb.DecideBatchRequest(intents=[intent_to_proto(i) for i in INTENTS]).SerializeToString()]


@FUZZ
@given(data=corrupted(BLOBS))
def test_decide_with_corrupted_bytes(channel: grpc.Channel, data: bytes) -> None:
    status, reply = raw_call(channel, "Decide", data)
    try:
        request = pb.DecideRequest.FromString(data)
    except DecodeError:
        assert status is grpc.StatusCode.INVALID_ARGUMENT, (status, reply)
        return
    single = pb.DecideResponse.FromString(reply).decision if isinstance(reply, bytes) else None
    batch = pb.DecideBatchResponse(decisions=[single]).SerializeToString() if single else reply
    check_reply(status, batch, [request.intent])


@FUZZ
@given(data=corrupted(BATCH_BLOBS + BLOBS))
def test_decide_batch_with_corrupted_bytes(channel: grpc.Channel, data: bytes) -> None:
    status, reply = raw_call(channel, "DecideBatch", data)
    try:
        request = pb.DecideBatchRequest.FromString(data)
    except DecodeError:
        assert status is grpc.StatusCode.INVALID_ARGUMENT, (status, reply)
        return
    check_reply(status, reply, list(request.intents))


def as_proto(doc: Any) -> pb.Intent | None:
    try:
        return intent_to_proto(doc)
    except (InvalidIntent, AttributeError, TypeError, ValueError):
        return None  # not expressible as a gRPC Intent: the client could not send it


@FUZZ
@given(docs=st.lists(mutated(INTENTS), min_size=1, max_size=3))
def test_decide_with_mutated_intents(channel: grpc.Channel, docs: list[Any]) -> None:
    intents = [i for i in (as_proto(d) for d in docs) if i is not None]
    if not intents:
        return
    status, reply = raw_call(channel, "Decide", pb.DecideRequest(intent=intents[0]).SerializeToString())
    single = pb.DecideResponse.FromString(reply).decision if isinstance(reply, bytes) else None
    check_reply(
        status,
        pb.DecideBatchResponse(decisions=[single]).SerializeToString() if single else reply,
        intents[:1],
    )
    status, reply = raw_call(
        channel, "DecideBatch", pb.DecideBatchRequest(intents=intents).SerializeToString()
    )
    check_reply(status, reply, intents)


def test_the_fuzz_inputs_reach_the_policy(channel: grpc.Channel, tmp_path: Path) -> None:
    # The targets above assert something only if the unmutated inputs are decided: make sure.
    status, reply = raw_call(channel, "DecideBatch", BATCH_BLOBS[0])
    assert status is grpc.StatusCode.OK
    outcomes = {d.outcome for d in pb.DecideBatchResponse.FromString(reply).decisions}
    assert {pb.ALLOW, pb.DENY} <= outcomes

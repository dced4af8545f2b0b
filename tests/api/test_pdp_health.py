"""The PDP's health surfaces: a refused (tampered) bundle shows in gRPC health and the log while
decisions continue on the last good revision; liveness does not follow the engine; the plaintext
health port serves health and nothing else."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
from pdp._proto.gpupaas.pdp.v1 import pdp_pb2_grpc
from pdp.api.server import BUNDLE_SERVICE, LIVENESS_SERVICE, SERVICE_NAME, PdpServer
from pdp.api.translate import intent_to_proto
from pdp.bundles.build import publish
from pdp.embedded import EmbeddedPDP
from pdp.engine.opa_http import OpaHttpEngine
from pdp.opa.status import parse_bundle_status
from pdp.point import DecisionPoint
from tests.bundles.test_bundles import tamper
from tests.conftest import embedded_settings, load_intent, self_signed

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health_of(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    return reply.status  # type: ignore[no-any-return]


def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        time.sleep(0.1)


def test_a_tampered_bundle_shows_in_health_and_the_log(
    workspace: Path, opa_binary: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pdp.api.server")
    deploy_us = load_intent("02-acme-eu-deploy-us.json")
    with EmbeddedPDP(embedded_settings(workspace, decision_log=None)) as stack:
        assert stack.bundle is not None
        good = stack.bundle.revision
        server = PdpServer(
            stack.point,
            listen="127.0.0.1:0",
            engine_ready=stack.engine_ready,
            bundle_refusal=stack.bundle_refusal,
            health_listen="127.0.0.1:0",
        ).start()
        try:
            assert server.health_address is not None
            assert health_of(server.health_address, BUNDLE_SERVICE) == SERVING
            assert server.bundle_refusal is None

            tampered = workspace / "tampered.tar.gz"
            tamper(stack.bundle.path, tampered)
            publish(tampered, workspace / "bundles")
            wait_for(lambda: health_of(server.health_address or "", BUNDLE_SERVICE) == NOT_SERVING)

            # Decided and documented: the PDP stays SERVING on the verified revision it has.
            for name in ("", SERVICE_NAME, LIVENESS_SERVICE):
                assert health_of(server.health_address, name) == SERVING, name
            assert "data.json: digest mismatch" in (server.bundle_refusal or "")
            warnings = [
                r for r in caplog.records if r.levelno == logging.WARNING and r.name == "pdp.api.server"
            ]
            assert len(warnings) == 1, warnings  # once per distinct refusal, not once per poll
            assert "refused the latest bundle" in warnings[0].getMessage()
            assert "data.json: digest mismatch" in warnings[0].getMessage()
            with grpc.insecure_channel(server.address) as channel:
                reply = pdp_pb2_grpc.DecisionServiceStub(channel).Decide(
                    pb.DecideRequest(intent=intent_to_proto(deploy_us)), timeout=5
                )
            assert reply.decision.bundle_revision == good
            assert "RESIDENCY_VIOLATION" in [r.code for r in reply.decision.reasons]

            # A good, signed bundle clears it.
            stack.build()
            wait_for(lambda: health_of(server.health_address or "", BUNDLE_SERVICE) == SERVING)
            assert server.bundle_refusal is None
            assert any("activated the latest bundle" in r.getMessage() for r in caplog.records)
        finally:
            server.stop()


def test_liveness_does_not_follow_the_engine(tmp_path: Path) -> None:
    # No OPA at all: the PDP is not ready (it could only answer DENY), but it is alive, and a
    # liveness probe must not restart it for its engine's outage.
    engine = OpaHttpEngine(f"unix://{tmp_path / 'no-opa.sock'}")
    server = PdpServer(
        DecisionPoint(engine), listen="127.0.0.1:0", engine_ready=lambda: False, health_listen="127.0.0.1:0"
    ).start()
    try:
        assert server.health_address is not None
        assert health_of(server.health_address, "") == NOT_SERVING
        assert health_of(server.health_address, SERVICE_NAME) == NOT_SERVING
        assert health_of(server.health_address, BUNDLE_SERVICE) == NOT_SERVING
        assert health_of(server.health_address, LIVENESS_SERVICE) == SERVING
    finally:
        server.stop()
        engine.close()


def test_the_health_port_is_plaintext_and_serves_health_only(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    engine = OpaHttpEngine(f"unix://{tmp_path / 'no-opa.sock'}")
    server = PdpServer(
        DecisionPoint(engine),
        listen="127.0.0.1:0",
        tls=(cert.read_bytes(), key.read_bytes()),
        health_listen="127.0.0.1:0",
    ).start()
    try:
        assert server.health_address is not None
        assert health_of(server.health_address, LIVENESS_SERVICE) == SERVING
        request = pb.DecideRequest(intent=intent_to_proto(load_intent("01-acme-eu-deploy-eu.json")))
        with grpc.insecure_channel(server.health_address) as channel, pytest.raises(grpc.RpcError) as raised:
            pdp_pb2_grpc.DecisionServiceStub(channel).Decide(request, timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # The decision port itself still speaks only TLS.
        with pytest.raises(grpc.RpcError):
            health_of(server.address, LIVENESS_SERVICE)
    finally:
        server.stop()
        engine.close()


def test_opa_status_is_read_into_a_refusal_line() -> None:
    ok = {"result": {"bundles": {"gpupaas": {"name": "gpupaas", "active_revision": "r1"}}}}
    assert parse_bundle_status(ok).refused is None and parse_bundle_status(ok).active_revision == "r1"
    compile_error = {
        "result": {
            "bundles": {
                "gpupaas": {
                    "active_revision": "r1",
                    "code": "bundle_error",
                    "message": "1 error occurred during compilation",
                    "errors": [
                        {
                            "code": "rego_parse_error",
                            "message": "unexpected eof token",
                            "location": {"file": "gpupaas/x.rego", "row": 3},
                        }
                    ],
                }
            }
        }
    }
    refused = parse_bundle_status(compile_error).refused
    assert refused == (
        "bundle_error: 1 error occurred during compilation; gpupaas/x.rego:3: unexpected eof token"
    )
    assert parse_bundle_status({"result": {}}).refused is None
    assert parse_bundle_status("not a status").active_revision is None

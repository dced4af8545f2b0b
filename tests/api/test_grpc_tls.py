"""Off loopback the gRPC front serves TLS; a client that trusts the CA gets decisions."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
from pdp._proto.gpupaas.pdp.v1 import pdp_pb2_grpc
from pdp.api.server import PdpServer
from pdp.api.translate import intent_to_proto
from pdp.embedded import EmbeddedPDP
from tests.conftest import load_intent, self_signed


def test_tls_server_answers_trusting_clients_and_refuses_plaintext(
    stack: EmbeddedPDP, tmp_path: Path
) -> None:
    cert_file, key_file = self_signed(tmp_path)
    cert, key = cert_file.read_bytes(), key_file.read_bytes()
    server = PdpServer(stack.point, listen="127.0.0.1:0", tls=(cert, key)).start()
    request = pb.DecideRequest(intent=intent_to_proto(load_intent("02-acme-eu-deploy-us.json")))
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=cert)
        with grpc.secure_channel(server.address, creds) as channel:
            reply = pdp_pb2_grpc.DecisionServiceStub(channel).Decide(request, timeout=5)
        assert reply.decision.outcome == pb.DENY
        with grpc.insecure_channel(server.address) as channel, pytest.raises(grpc.RpcError):
            pdp_pb2_grpc.DecisionServiceStub(channel).Decide(request, timeout=2)
    finally:
        server.stop()

"""Off loopback the gRPC front serves TLS; a client that trusts the CA gets decisions."""

from __future__ import annotations

import datetime as dt
import ipaddress

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
from pdp._proto.gpupaas.pdp.v1 import pdp_pb2_grpc
from pdp.api.server import PdpServer
from pdp.api.translate import intent_to_proto
from pdp.embedded import EmbeddedPDP

from .conftest import load_intent


def self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pdp.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_tls_server_answers_trusting_clients_and_refuses_plaintext(stack: EmbeddedPDP) -> None:
    cert, key = self_signed()
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

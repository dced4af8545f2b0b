"""The controller's ways to ask the PDP: over gRPC with TLS (as off loopback), and failing closed
when it cannot ask."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdp.api.client import PdpClient
from pdp.api.server import PdpServer
from pdp.embedded import EmbeddedPDP
from pdp.substrate.kueue.deciders import GrpcDecider, PdpUnavailable, PointDecider
from tests.conftest import self_signed
from tests.e2e.controlplane import free_port

INTENT = {
    "kind": "admit_workload",
    "actor": "kueue",
    "admit_workload": {
        "namespace": "acme-prod",
        "name": "job-x/main",
        "kind": "Workload",
        "resources": {"nvidia.com/gpu": 1},
        "node_selector": {"topology.kubernetes.io/region": "us-east-1"},
    },
}


def test_the_grpc_decider_talks_tls_to_a_pdp_it_trusts(stack: EmbeddedPDP, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = PdpServer(stack.point, listen="127.0.0.1:0", tls=(cert.read_bytes(), key.read_bytes())).start()
    try:
        with PdpClient(server.address, ca_file=cert) as client:
            [decision] = GrpcDecider(client).decide([INTENT])
        assert decision.outcome == "DENY" and decision.reason_codes[0] == "RESIDENCY_VIOLATION"
        # The same decision shape as in process: what the check makes of it reads the same.
        [local] = PointDecider(stack.point).decide([INTENT])
        assert (decision.explanation(), decision.tenant, decision.engine_failed) == (
            local.explanation(),
            local.tenant,
            local.engine_failed,
        )
        assert decision.constraints == local.constraints
        # Plaintext to a TLS server is not an answer: unavailable, so the check fails closed.
        with PdpClient(server.address) as plain, pytest.raises(PdpUnavailable):
            GrpcDecider(plain, timeout=2).decide([INTENT])
    finally:
        server.stop()


def test_no_pdp_listening_is_unavailable_not_an_answer() -> None:
    with PdpClient(f"127.0.0.1:{free_port()}") as client, pytest.raises(PdpUnavailable) as down:
        GrpcDecider(client, timeout=1).decide([INTENT])
    assert "PDP at gRPC" in str(down.value)


def test_the_point_decider_decides_one_batch_under_one_revision(stack: EmbeddedPDP) -> None:
    allowed = {**INTENT, "admit_workload": {**INTENT["admit_workload"], "node_selector": {}}}  # type: ignore[dict-item]
    decisions = PointDecider(stack.point).decide([INTENT, allowed])
    assert [d.outcome for d in decisions] == ["DENY", "ALLOW"]
    assert len({d.bundle_revision for d in decisions}) == 1

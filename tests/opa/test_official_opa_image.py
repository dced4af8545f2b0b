"""Production shape with the official OPA image: OPA in a container pulls the signed bundle from
our bundle server over HTTPS (trusting the local CA only) and the PDP decides through it. Needs a
Docker engine; without one it skips (the same path runs in test_production_mode.py with the locally
built, pinned OPA binary)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pdp.bundles.server import BundleServer
from pdp.embedded import EmbeddedPDP, opa_ready
from pdp.engine.opa_http import OpaHttpEngine
from pdp.net.certs import issue_server_cert, make_ca
from pdp.net.servingcert import ServingCertificate
from pdp.point import DecisionPoint
from tests.conftest import ROOT, embedded_settings, load_intent


def docker_engine_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:
        return False


pytestmark = pytest.mark.skipif(
    not docker_engine_available(),
    reason="no Docker engine on this machine (docker CLI only); the local-binary OPA path covers this",
)


def test_official_opa_image_pulls_signed_bundle_and_decides(workspace: Path) -> None:
    from testcontainers.core.container import DockerContainer

    stack = EmbeddedPDP(embedded_settings(workspace))
    bundle = stack.build()
    ca = make_ca(workspace / "pki")
    serving = issue_server_cert(ca, workspace / "pki" / "bundles", ["bundles"])
    tls = ServingCertificate(serving.cert, serving.key)
    with BundleServer(workspace / "bundles", host="0.0.0.0", tls=tls) as server:
        port = server.url.rsplit(":", 1)[1]
        container = (
            DockerContainer("openpolicyagent/opa:1.22.3")
            .with_volume_mapping(str(ROOT / "deploy" / "opa-config.yaml"), "/config/opa-config.yaml", "ro")
            .with_volume_mapping(str(stack.keys.public_key), "/keys/bundle-signing.pub.pem", "ro")
            .with_volume_mapping(str(ca.cert), "/certs/ca.crt", "ro")
            .with_kwargs(extra_hosts={"bundles": "host-gateway"})
            .with_exposed_ports(8181)
            .with_command(
                "run --server --addr=0.0.0.0:8181 --config-file=/config/opa-config.yaml "
                "--set-file=keys.gpupaas.key=/keys/bundle-signing.pub.pem "
                f"--set=services.bundles.url=https://bundles:{port} "
                "--set=bundles.gpupaas.polling.min_delay_seconds=1 "
                "--set=bundles.gpupaas.polling.max_delay_seconds=2"
            )
        )
        with container:
            addr = f"{container.get_container_host_ip()}:{container.get_exposed_port(8181)}"
            deadline = time.monotonic() + 60
            while not opa_ready(addr):
                assert time.monotonic() < deadline, "OPA container never activated the bundle"
                time.sleep(0.5)
            engine = OpaHttpEngine(addr)
            decision = DecisionPoint(engine).decide(load_intent("02-acme-eu-deploy-us.json"))
            engine.close()
    assert decision.outcome == "DENY" and "RESIDENCY_VIOLATION" in decision.reason_codes
    assert decision.bundle_revision == bundle.revision

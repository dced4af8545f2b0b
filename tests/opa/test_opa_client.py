"""`pdp opa status` through opa-python-client against a real OPA: the active revision, a refused
(tampered) bundle with OPA's own error line, and the bundle activation failure it counts in the
PDP's metrics; addresses the client cannot reach are refused with what to give instead."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest

from pdp.api.server import PdpServer
from pdp.bundles.build import publish
from pdp.cli import main
from pdp.embedded import EmbeddedPDP
from tests.bundles.test_bundles import tamper
from tests.conftest import embedded_settings
from tests.e2e.controlplane import free_port
from tests.test_metrics import delta, parse


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not met within {timeout}s"
        time.sleep(0.1)


def status(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["opa", "status", *argv])
    return code, capsys.readouterr().out


def test_status_shows_the_active_revision_then_the_refusal_of_a_tampered_bundle(
    workspace: Path, opa_binary: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    addr = f"127.0.0.1:{free_port()}"
    with EmbeddedPDP(embedded_settings(workspace, decision_log=None, opa_addr=addr)) as stack:
        assert stack.bundle is not None
        good = stack.bundle.revision
        code, out = status(capsys, "--opa-addr", addr)
        assert code == 0, out
        assert "bundle gpupaas: ok" in out and f"active revision:            {good}" in out

        code, out = status(capsys, "--opa-addr", f"http://{addr}", "--json")
        (report,) = json.loads(out)
        assert code == 0 and report["active_revision"] == good and report["healthy"] and not report["errors"]

        # The PDP's health monitor counts the refusal in its metrics.
        server = PdpServer(stack.point, listen="127.0.0.1:0", bundle_refusal=stack.bundle_refusal).start()
        try:
            before = parse(generate_latest(REGISTRY).decode())
            tamper(stack.bundle.path, workspace / "tampered.tar.gz")
            publish(workspace / "tampered.tar.gz", workspace / "bundles")
            wait_for(lambda: server.bundle_refusal is not None)
            after = parse(generate_latest(REGISTRY).decode())
        finally:
            server.stop()
        assert delta(after, before, "gpupaas_pdp_bundle_activation_failures_total") == 1

        code, out = status(capsys, "--opa-addr", addr)
        assert code == 1, out
        assert "bundle gpupaas: REFUSED" in out
        assert f"active revision:            {good}" in out  # OPA keeps the verified revision
        assert "digest mismatch" in out


def test_addresses_the_client_cannot_use_are_refused_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = status(capsys, "--opa-addr", "unix:///run/opa.sock")
    assert code == 2 and "TCP only" in out and "--sidecar-addr" in out
    code, out = status(capsys, "--opa-addr", "opa.internal")
    assert code == 2 and "expected HOST:PORT" in out
    code, out = status(capsys, "--opa-addr", f"127.0.0.1:{free_port()}", "--timeout", "0.5")
    assert code == 2 and "does not answer" in out

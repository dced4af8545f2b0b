"""Fail closed: OPA down, slow or without an active bundle gives DENY with an engine reason code,
inside the caller's deadline, and the PDP recovers by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from pdp.bundles.server import BundleServer
from pdp.bundles.signing import ensure_keypair
from pdp.embedded import EmbeddedPDP
from pdp.engine.opa_http import OpaHttpEngine
from pdp.opa.http import http_client
from pdp.opa.sidecar import OpaSidecar, SidecarSettings
from pdp.point import DecideOptions, DecisionPoint

from .conftest import load_intent

DEPLOY_EU = load_intent("01-acme-eu-deploy-eu.json")


def test_opa_killed_mid_run_denies_then_recovers(stack: EmbeddedPDP) -> None:
    assert stack.point.decide(DEPLOY_EU).outcome == "ALLOW"
    assert stack.sidecar is not None
    old_pid = stack.sidecar.pid

    stack.sidecar.kill()
    during = stack.point.decide(DEPLOY_EU)
    assert during.outcome == "DENY"
    # Down (connection refused) or, once restarted, up but still loading the bundle.
    assert during.reason_codes[0] in {"ENGINE_UNAVAILABLE", "ENGINE_NO_ACTIVE_BUNDLE"}
    assert during.reasons[0].policy == "pdp.engine"
    assert not stack.engine_ready()

    stack.sidecar.wait_ready(timeout=30)
    after = stack.point.decide(DEPLOY_EU)
    assert after.outcome == "ALLOW"
    assert stack.sidecar.pid != old_pid and stack.sidecar.restarts >= 1
    assert after.bundle_revision == stack.bundle.revision  # type: ignore[union-attr]


def test_slow_opa_answers_deny_inside_the_deadline(stack: EmbeddedPDP) -> None:
    assert stack.sidecar is not None and stack.sidecar.pid is not None
    stack.point.decide(DEPLOY_EU)  # warm the connection
    pid = stack.sidecar.pid
    os.kill(pid, signal.SIGSTOP)  # OPA alive but not answering: the slow case
    try:
        started = time.monotonic()
        decision = stack.point.decide(DEPLOY_EU, DecideOptions(deadline=started + 0.25))
        elapsed = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert decision.outcome == "DENY"
    assert decision.reason_codes == ["ENGINE_TIMEOUT"]
    assert elapsed < 0.25
    assert stack.point.decide(DEPLOY_EU).outcome == "ALLOW"


def test_an_exhausted_deadline_denies_without_asking_the_engine(stack: EmbeddedPDP) -> None:
    decision = stack.point.decide(DEPLOY_EU, DecideOptions(deadline=time.monotonic() - 1))
    assert decision.outcome == "DENY" and decision.reason_codes == ["ENGINE_TIMEOUT"]


def test_no_active_bundle_is_a_deny(tmp_path: Path, opa_binary: Path) -> None:
    keys = ensure_keypair(tmp_path / "keys")
    (tmp_path / "empty").mkdir()
    with (
        BundleServer(tmp_path / "empty") as server,
        OpaSidecar(SidecarSettings(server.url, keys.public_key, tmp_path / "opa")) as opa,
    ):
        with http_client(opa.addr) as client:
            deadline = time.monotonic() + 15
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "OPA did not start"
                time.sleep(0.05)
        engine = OpaHttpEngine(opa.addr)
        decision = DecisionPoint(engine).decide(DEPLOY_EU)
        engine.close()
    assert decision.outcome == "DENY"
    assert decision.reason_codes == ["ENGINE_NO_ACTIVE_BUNDLE"]


def test_unreachable_engine_is_a_deny(tmp_path: Path) -> None:
    engine = OpaHttpEngine(f"unix://{tmp_path / 'nothing.sock'}")
    decision = DecisionPoint(engine).decide(DEPLOY_EU)
    assert decision.outcome == "DENY" and decision.reason_codes == ["ENGINE_UNAVAILABLE"]


def test_an_evaluation_error_in_opa_is_a_deny(tmp_path: Path, opa_binary: Path) -> None:
    # A policy whose complete rule gets two values: OPA answers 500 eval_conflict_error.
    policy = tmp_path / "conflict.rego"
    policy.write_text(
        "package gpupaas.decision\n\n"
        'result := {"outcome": "ALLOW"} if input.kind\n\n'
        'result := {"outcome": "DENY"} if input.kind\n'
    )
    sock = tmp_path / "opa.sock"
    proc = subprocess.Popen(
        [str(opa_binary), "run", "--server", "--addr", f"unix://{sock}", "--skip-version-check", str(policy)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while not sock.exists():
            assert time.monotonic() < deadline, "OPA did not start"
            time.sleep(0.05)
        engine = OpaHttpEngine(f"unix://{sock}")
        decision = DecisionPoint(engine).decide(DEPLOY_EU)
        engine.close()
    finally:
        proc.terminate()
        proc.wait()
    assert decision.outcome == "DENY"
    assert decision.reason_codes == ["ENGINE_ERROR"]
    assert "500" in decision.reasons[0].message

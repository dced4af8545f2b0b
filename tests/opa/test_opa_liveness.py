"""A frozen OPA is replaced by the supervisor within a bounded time, and nothing ever answers from
the frozen process: decisions are DENY while it is frozen and ALLOW again from its replacement."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pdp.embedded import EmbeddedPDP
from pdp.opa.liveness import LivenessSettings
from pdp.point import DecideOptions
from tests.conftest import EXAMPLES, embedded_settings, load_intent
from tests.freeze import frozen, thread_states, wait_stopped

DEPLOY_EU = load_intent("01-acme-eu-deploy-eu.json")
# Faster than the defaults, so the test takes seconds: replaced within 3 x (0.2 + 0.5) = 2.1 s.
FAST = LivenessSettings(interval=0.2, timeout=0.5, failures=3)
# What a loaded two-core machine may add to the bound: late probe threads, the restart backoff.
LOAD_SLACK = 3.0
ENGINE_DENIALS = {"ENGINE_TIMEOUT", "ENGINE_UNAVAILABLE", "ENGINE_NO_ACTIVE_BUNDLE"}


@pytest.fixture()
def stack(tmp_path: Path, opa_binary: Path) -> Iterator[EmbeddedPDP]:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    with EmbeddedPDP(embedded_settings(tmp_path, decision_log=None, liveness=FAST)) as running:
        # The bound holds from the process's first answer to a probe; before it, a starting OPA
        # gets the startup allowance (30 s).
        assert running.sidecar is not None
        deadline = time.monotonic() + 15
        while not running.sidecar.live:
            assert time.monotonic() < deadline, "the supervisor never saw OPA answer"
            time.sleep(0.02)
        yield running


def test_the_default_bound_is_the_documented_one() -> None:
    assert LivenessSettings().detection_bound() == 6.0
    assert FAST.detection_bound() == pytest.approx(2.1)


def test_a_frozen_opa_is_replaced_and_never_answers_again(stack: EmbeddedPDP) -> None:
    sidecar = stack.sidecar
    assert sidecar is not None and sidecar.pid is not None
    assert stack.point.decide(DEPLOY_EU).outcome == "ALLOW"
    old = sidecar.pid
    os.kill(old, signal.SIGSTOP)
    wait_stopped(old)
    frozen_at = time.monotonic()

    denials: list[str] = []
    while True:
        decision = stack.point.decide(DEPLOY_EU, DecideOptions(timeout=0.3))
        # Every look at the old process before the supervisor killed it finds every thread
        # stopped: it never ran again, so it cannot have produced any of these answers. (Once
        # killed, its threads wake only to exit in the kernel, showing R or D for a moment.)
        kills_before = sidecar.unresponsive_kills
        try:
            states = thread_states(old)
        except FileNotFoundError:
            states = []
        if kills_before == sidecar.unresponsive_kills == 0:
            assert all(s == "T" for s in states), states
        if decision.outcome == "ALLOW":
            break
        assert decision.outcome == "DENY" and decision.reason_codes[0] in ENGINE_DENIALS, decision
        denials.append(decision.reason_codes[0])
        assert time.monotonic() - frozen_at < FAST.detection_bound() + 30, "OPA was never replaced"
    recovered_after = time.monotonic() - frozen_at

    assert denials[0] == "ENGINE_TIMEOUT"  # frozen: the engine waits out the deadline and denies
    assert sidecar.pid != old
    assert sidecar.unresponsive_kills == 1
    assert (old, -signal.SIGKILL) in sidecar.exits  # killed while stopped, reaped before the new one
    with pytest.raises(ProcessLookupError):
        os.kill(old, signal.SIGCONT)  # nothing left to wake
    # Detection plus the first restart's backoff, then the new OPA activates the bundle.
    assert recovered_after < FAST.detection_bound() + 0.2 + LOAD_SLACK + 2.0, recovered_after
    assert stack.engine_ready()


def test_a_short_freeze_is_not_mistaken_for_a_dead_opa(stack: EmbeddedPDP) -> None:
    sidecar = stack.sidecar
    assert sidecar is not None and sidecar.pid is not None
    pid = sidecar.pid
    # Shorter than one probe timeout: at most one probe fails, and failures must come in a row.
    with frozen(pid):
        time.sleep(FAST.timeout * 0.8)
    time.sleep(FAST.detection_bound())
    assert sidecar.pid == pid and sidecar.unresponsive_kills == 0
    assert stack.point.decide(DEPLOY_EU).outcome == "ALLOW"


def test_a_restarted_opa_gets_time_to_start(stack: EmbeddedPDP) -> None:
    # A killed OPA comes back through the exit path; its startup (no socket yet) is not counted
    # as unresponsiveness, so it is not killed again before it could answer.
    sidecar = stack.sidecar
    assert sidecar is not None
    sidecar.kill()
    sidecar.wait_ready(timeout=30)
    time.sleep(FAST.detection_bound())
    assert sidecar.restarts == 1 and sidecar.unresponsive_kills == 0
    assert stack.point.decide(DEPLOY_EU).outcome == "ALLOW"

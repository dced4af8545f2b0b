"""The wasm engine's direct calls into wasmtime (pdp/engine/wasm_native.py): a host built-in that
fails becomes an engine failure (a DENY), never a crash or an allow, and the engine goes on; a
policy that runs past its deadline is stopped."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from pdp.decision import Outcome
from pdp.embedded import EmbeddedPDP
from pdp.engine.base import EngineError, EngineTimeout
from pdp.engine.wasm import WasmEngine
from pdp.opa.binary import run_opa
from pdp.point import DecideOptions, DecisionPoint
from tests.conftest import load_intent


def _builtin_calls(engine: WasmEngine, intent: dict[str, Any]) -> int:
    calls = 0
    instances = list(engine._pool.idle)
    originals = [dict(i._builtins) for i in instances]

    def counting(original: Any) -> Any:
        def call(*args: Any) -> Any:
            nonlocal calls
            calls += 1
            return original(*args)

        return call

    for instance in instances:
        instance._builtins = {k: counting(v) for k, v in instance._builtins.items()}
    try:
        engine.evaluate("gpupaas/decision/result", intent, timeout=5)
    finally:
        for instance, original in zip(instances, originals, strict=True):
            instance._builtins = original
    return calls


def _sprintf_engine(root: Path) -> WasmEngine:
    """The project's policies no longer call a host built-in on any path a valid intent reaches
    (their messages use concat and format_int): a policy of the test's own keeps one."""
    (root / "policy").mkdir()
    (root / "policy" / "p.rego").write_text(
        "package gpupaas.decision\n\n"
        'result := {"message": sprintf("%s needs %d GPUs", [input.who, input.gpus])}\n'
    )
    bundle = root / "bundle.tar.gz"
    run_opa("build", "-t", "wasm", "-e", "gpupaas/decision/result", "-o", str(bundle), str(root / "policy"))
    return WasmEngine.from_tarball(bundle, instances=1)


def test_a_failing_host_builtin_is_an_engine_failure_and_the_engine_goes_on(tmp_path: Path) -> None:
    engine = _sprintf_engine(tmp_path)
    intent = {"who": "acme", "gpus": 4}
    assert engine.evaluate("gpupaas/decision/result", intent, timeout=5) == {"message": "acme needs 4 GPUs"}
    assert _builtin_calls(engine, intent) == 1

    def broken(*_: Any) -> Any:
        raise ValueError("sprintf exploded")

    (instance,) = list(engine._pool.idle)
    saved = dict(instance._builtins)
    instance._builtins = dict.fromkeys(saved, broken)
    try:
        with pytest.raises(EngineError, match="sprintf exploded"):
            engine.evaluate("gpupaas/decision/result", intent, timeout=5)
    finally:
        instance._builtins = saved
    # the same instance evaluates normally afterwards
    assert engine.evaluate("gpupaas/decision/result", intent, timeout=5) == {"message": "acme needs 4 GPUs"}
    engine.close()


def test_an_engine_failure_is_a_deny(wasm_stack: EmbeddedPDP) -> None:
    engine = wasm_stack.engine
    assert isinstance(engine, WasmEngine)
    intent = load_intent("02-acme-eu-deploy-us.json")

    def broken(*_: Any, **__: Any) -> Any:
        raise EngineError("the engine broke")

    original = engine.evaluate
    engine.evaluate = broken  # type: ignore[method-assign]
    try:
        decision = DecisionPoint(engine).decide(intent, DecideOptions(timeout=5))
    finally:
        engine.evaluate = original  # type: ignore[method-assign]
    assert decision.outcome is Outcome.DENY
    assert [r.code for r in decision.reasons] == ["ENGINE_ERROR"]
    again = DecisionPoint(engine).decide(load_intent("01-acme-eu-deploy-eu.json"), DecideOptions(timeout=5))
    assert again.outcome is Outcome.ALLOW


def test_a_runaway_policy_is_stopped_at_its_deadline(tmp_path: Path) -> None:
    """The epoch ticker (wasm_native.epoch_ticker) moves the deadline clock on while a policy
    loops: the evaluation traps as a timeout near its deadline, and the instance is replaced."""
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "p.rego").write_text(
        "package gpupaas.decision\n\n"
        "r := numbers.range(1, 20000)\n"
        "result := count([1 | some a in r; some b in r; a == b + 1000000])\n"
    )
    bundle, policy = tmp_path / "bundle.tar.gz", tmp_path / "policy"
    run_opa("build", "-t", "wasm", "-e", "gpupaas/decision/result", "-o", str(bundle), str(policy))
    engine = WasmEngine.from_tarball(bundle, instances=1)
    try:
        started = time.monotonic()
        with pytest.raises(EngineTimeout):
            engine.evaluate("gpupaas/decision/result", {}, timeout=0.2)
        assert time.monotonic() - started < 1.5
        assert len(engine._pool.idle) == 1  # a fresh instance took the trapped one's place
    finally:
        engine.close()

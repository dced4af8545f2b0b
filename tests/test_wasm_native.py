"""The wasm engine's direct calls into wasmtime (pdp/engine/wasm_native.py): a host built-in that
fails becomes an engine failure (a DENY), never a crash or an allow, and the engine goes on."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from pdp.decision import Outcome
from pdp.embedded import EmbeddedPDP
from pdp.engine.wasm import WasmEngine
from pdp.point import DecideOptions, DecisionPoint

from .conftest import EXAMPLES, embedded_settings, load_intent


@pytest.fixture(scope="module")
def wasm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPDP]:
    root = tmp_path_factory.mktemp("wasm-native")
    shutil.copytree(EXAMPLES, root / "examples")
    with EmbeddedPDP(embedded_settings(root, engine="wasm")) as running:
        yield running


def _builtin_calls(engine: WasmEngine, intent: dict[str, Any]) -> int:
    calls = 0
    instances = list(engine._pool.queue)
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
        DecisionPoint(engine).decide(intent, DecideOptions(timeout=5))
    finally:
        for instance, original in zip(instances, originals, strict=True):
            instance._builtins = original
    return calls


def test_a_failing_host_builtin_is_a_deny_and_the_engine_goes_on(wasm_stack: EmbeddedPDP) -> None:
    engine = wasm_stack.engine
    assert isinstance(engine, WasmEngine)
    intent = load_intent("02-acme-eu-deploy-us.json")  # a denial: its messages use sprintf
    assert _builtin_calls(engine, intent) > 0, "the intent no longer calls a host built-in"

    def broken(*_: Any) -> Any:
        raise ValueError("sprintf exploded")

    instances = list(engine._pool.queue)
    saved = [dict(i._builtins) for i in instances]
    for instance in instances:
        instance._builtins = dict.fromkeys(instance._builtins, broken)
    try:
        decision = DecisionPoint(engine).decide(intent, DecideOptions(timeout=5))
    finally:
        for instance, original in zip(instances, saved, strict=True):
            instance._builtins = original
    assert decision.outcome is Outcome.DENY
    assert [r.code for r in decision.reasons] == ["ENGINE_ERROR"]
    assert "sprintf exploded" in decision.reasons[0].message
    # the same instances decide normally afterwards
    again = DecisionPoint(engine).decide(load_intent("01-acme-eu-deploy-eu.json"), DecideOptions(timeout=5))
    assert again.outcome is Outcome.ALLOW

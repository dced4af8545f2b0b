"""The wasm engine before and between bundles (pdp/engine/wasm_reload.py): no bundle is a DENY
(NoActiveBundle), a bundle that does not load leaves the current one deciding."""

from __future__ import annotations

from pathlib import Path

import pytest

from pdp.engine.base import NoActiveBundle
from pdp.engine.wasm import WasmBundle
from pdp.engine.wasm_reload import ReloadableWasmEngine
from pdp.point import DecisionPoint
from tests.bundles.signed_wasm import DENIED, build_signed, keys_in
from tests.conftest import load_intent


def test_without_a_bundle_every_decision_is_a_deny(tmp_path: Path) -> None:
    engine = ReloadableWasmEngine.from_file(tmp_path / "not-yet.tar.gz")
    assert not engine.loaded and engine.revision == ""
    with pytest.raises(NoActiveBundle):
        engine.evaluate("gpupaas/decision/result", {}, timeout=1.0)
    decision = DecisionPoint(engine).decide(load_intent("01-acme-eu-deploy-eu.json"))
    assert decision.outcome == "DENY" and decision.reason_codes == ["ENGINE_NO_ACTIVE_BUNDLE"]


def test_a_bundle_that_does_not_load_keeps_the_current_one(tmp_path: Path, opa_binary: Path) -> None:
    built = build_signed(tmp_path, keys_in(tmp_path / "keys"))
    assert built.wasm_path is not None
    engine = ReloadableWasmEngine.from_file(built.wasm_path)
    assert engine.loaded and engine.revision == built.revision
    good = WasmBundle.from_tarball(built.wasm_path)
    broken = WasmBundle(b"\0asm not a module", good.data, "broken")
    with pytest.raises(Exception):  # noqa: B017 - wasmtime's own error type
        engine.replace(broken)
    decision = DecisionPoint(engine).decide(load_intent(DENIED))
    assert decision.outcome == "DENY" and decision.bundle_revision == built.revision
    assert "RESIDENCY_VIOLATION" in decision.reason_codes

"""A decision log of real decisions (the example intents decided by the wasm engine on the
repository's policies) and a tightened candidate policy, for the replay tests and bench."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pdp.decision import canonical_intent, digest_of
from pdp.engine.wasm import WasmBundle, WasmEngine
from pdp.oneshot import cached_bundle
from pdp.point import DecideOptions, DecisionPoint
from pdp.records.intents import IntentRetention
from pdp.records.log import DecisionLog, Integrity
from pdp.settings import EmbeddedSettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TIGHTENED_RULE = EXAMPLES / "policy-changes" / "residency-cluster-required.rego"


def settings(state: Path) -> EmbeddedSettings:
    return EmbeddedSettings.from_project(state=state, keys=state / "keys", decision_log=None)


def example_intents() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((EXAMPLES / "intents").glob("*.json"))]


def tightened_policies(into: Path) -> Path:
    """A copy of policies/ with the residency rule of the worked example added."""
    shutil.copytree(ROOT / "policies", into, ignore=shutil.ignore_patterns("*_test.rego"))
    residency = into / "gpupaas" / "residency" / "residency.rego"
    residency.write_text(residency.read_text() + "\n" + TIGHTENED_RULE.read_text())
    return into


def baseline(state: Path) -> WasmBundle:
    bundle, _ = cached_bundle(settings(state))
    return bundle


def record_decisions(
    log_path: Path, bundle: WasmBundle, rounds: int, *, url: str = "", **retention: Any
) -> list[dict[str, Any]]:
    """Decide every example intent `rounds` times on `bundle`, recorded in the log at `log_path`
    (or in central records at `url`)."""
    decided = []
    log = DecisionLog(log_path, Integrity(url=url, intents=IntentRetention(**retention)))
    try:
        with WasmEngine(bundle, instances=1) as engine:
            point = DecisionPoint(engine, log)
            for _ in range(rounds):
                for intent in example_intents():
                    decided.append(point.decide(intent, DecideOptions(timeout=30)).to_dict())
    finally:
        log.close()
    return decided


def copy_records(log_path: Path, bundle: WasmBundle, total: int) -> None:
    """`total` records: the example intents decided once each, their decisions appended again
    under new ids (what many days of the same traffic look like), in batches."""
    with WasmEngine(bundle, instances=1) as engine:
        point = DecisionPoint(engine)
        decided = [(i, point.decide(i, DecideOptions(timeout=30))) for i in example_intents()]
    log = DecisionLog(log_path, Integrity(intents=IntentRetention(max_count=0)))
    try:
        now = datetime.now(UTC)
        for n in range(total):
            intent, decision = decided[n % len(decided)]
            text = canonical_intent(intent)
            copy = dataclasses.replace(decision, decision_id=f"d{n}", decided_at=now)
            log.append(copy, digest_of(text), text)
            if n % 10_000 == 0:
                log.flush()
    finally:
        log.close()


def tightened_bundle_file(state: Path, into: Path) -> Path:
    """The tightened policies built into a wasm bundle file (the shadow's candidate)."""
    from pdp.oneshot import inputs_key

    candidate = settings(state).replace(policies=tightened_policies(into))
    cached_bundle(candidate)
    return state / "decide-cache" / inputs_key(candidate) / "bundle.wasm.tar.gz"

"""Decide recorded intents again on a candidate bundle, in batches, in-process."""

from __future__ import annotations

import dataclasses
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from pdp import decision as render
from pdp.decision import Decision
from pdp.engine.base import EngineError, EngineFailure
from pdp.engine.wasm import WasmBundle, WasmEngine
from pdp.point import BATCH_PATH, DECISION_PATH
from pdp.replay.compare import Change, Report, Side, changes_between
from pdp.replay.source import Recorded

BATCH = 256
# A batch is one evaluation: its deadline is generous (a loaded machine), never the caller's.
_BATCH_SECONDS = 120.0


def _batches(items: Iterable[Recorded], size: int) -> Iterator[list[Recorded]]:
    batch: list[Recorded] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _render(result: Any, intent: dict[str, Any]) -> Decision:
    return render.from_engine_result(
        result, intent, decision_id="replay", decided_at=datetime.now(UTC), evaluation_ms=0.0
    )


def _failed(error: EngineError, intent: dict[str, Any]) -> Decision:
    return render.engine_failure(
        error, intent, decision_id="replay", decided_at=datetime.now(UTC), evaluation_ms=0.0
    )


def decide_all(engine: WasmEngine, intents: list[dict[str, Any]]) -> list[Decision]:
    """The candidate's decisions of `intents`: one evaluation for the batch, or one each when the
    batch fails (so one intent that breaks the policy fails alone, DENY with its engine code)."""
    try:
        results = engine.evaluate(BATCH_PATH, {"intents": intents}, timeout=_BATCH_SECONDS)
        if not isinstance(results, list) or len(results) != len(intents):
            raise EngineFailure("the batch result does not match the intents")
        return [_render(r, i) for r, i in zip(results, intents, strict=True)]
    except EngineError:
        pass
    decided = []
    for intent in intents:
        try:
            decided.append(_render(engine.evaluate(DECISION_PATH, intent, timeout=_BATCH_SECONDS), intent))
        except EngineError as exc:
            decided.append(_failed(exc, intent))
    return decided


def compare(item: Recorded, decided: Decision) -> Change | None:
    record = item.record
    recorded = Side.of(record.outcome, record.reasons, record.constraints, record.bundle_revision)
    candidate = Side.of(
        decided.outcome.value,
        [r.__dict__ for r in decided.reasons],
        dict(decided.constraints),
        decided.bundle_revision,
    )
    found = changes_between(recorded, candidate)
    if not found:
        return None
    return Change(
        record.decision_id, record.decided_at, record.tenant, record.kind, tuple(found), recorded, candidate
    )


def replay(
    records: Iterable[Recorded],
    bundle: WasmBundle,
    *,
    description: str = "",
    batch: int = BATCH,
    keep: int = 1000,
    jobs: int = 0,
) -> Report:
    """Every record of `records` whose intent was kept, decided on `bundle` and compared.

    `jobs` batches are evaluated at once (default: one per CPU, at most 4): wasmtime runs a
    module without the GIL, so threads share the cores; reports come in record order."""
    jobs = jobs or min(os.cpu_count() or 1, 4)
    started = time.monotonic()
    report = Report(candidate=description, candidate_revision=bundle.revision, keep=keep)

    def replayable() -> Iterator[Recorded]:
        for item in records:
            report.selected += 1
            if item.intent is None:
                report.skipped[item.skipped] += 1
            else:
                yield item

    def collect(chunk: list[Recorded], decided: list[Decision]) -> None:
        for item, decision in zip(chunk, decided, strict=True):
            report.replayed += 1
            change = compare(item, decision)
            if change is not None:
                report.add(change)

    with WasmEngine(bundle, instances=jobs) as engine, ThreadPoolExecutor(jobs) as pool:
        window: deque[tuple[list[Recorded], Future[list[Decision]]]] = deque()
        for chunk in _batches(replayable(), batch):
            intents = [item.intent for item in chunk if item.intent is not None]
            window.append((chunk, pool.submit(decide_all, engine, intents)))
            if len(window) > 2 * jobs:  # bounded: the log is streamed, not held in memory
                done, future = window.popleft()
                collect(done, future.result())
        while window:
            done, future = window.popleft()
            collect(done, future.result())
    report.seconds = time.monotonic() - started
    return report


def rebased(records: Iterable[Recorded], bundle: WasmBundle, *, batch: int = BATCH) -> Iterator[Recorded]:
    """`records` with each replayable decision replaced by `bundle`'s decision of its intent, so a
    replay of them compares a candidate with `bundle` (the revision active now), not with what
    was answered when each was recorded (perhaps on a revision since rolled back)."""
    with WasmEngine(bundle, instances=1) as engine:
        for chunk in _batches(records, batch):
            decided = iter(decide_all(engine, [i.intent for i in chunk if i.intent is not None]))
            for item in chunk:
                if item.intent is None:
                    yield item
                    continue
                now = next(decided)
                record = dataclasses.replace(
                    item.record,
                    outcome=now.outcome.value,
                    reasons=[r.__dict__ for r in now.reasons],
                    constraints=dict(now.constraints),
                    bundle_revision=now.bundle_revision,
                )
                yield Recorded(record, item.intent, item.skipped)

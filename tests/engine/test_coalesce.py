"""Concurrent decisions asked of the OPA sidecar in batches (pdp/engine/coalesce.py) decide as
asked one by one, against a real OPA; failures stay per caller and closed."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pdp.decision import Outcome
from pdp.embedded import EmbeddedPDP
from pdp.engine.base import EngineTimeout
from pdp.engine.coalesce import CoalescingEngine
from pdp.engine.opa_http import OpaHttpEngine
from pdp.engine.wasm import WasmEngine
from pdp.intents import validate_intent
from pdp.point import BATCH_PATH, DECISION_PATH, DecideOptions, DecisionPoint
from tests.engine.test_engine_differential import corpus
from tests.freeze import frozen
from tests.ports import free_port


def _valid_intents() -> list[Any]:
    out = []
    for intent in corpus():
        try:
            validate_intent(intent)
        except ValueError:
            continue
        out.append(intent)
    return out


INTENTS = _valid_intents()


def _concurrently(call: Any, items: list[Any], threads: int = 16) -> list[Any]:
    """`call(item)` for every item from `threads` threads released together."""
    start = threading.Barrier(threads)

    def run(chunk: list[Any]) -> list[Any]:
        start.wait()
        return [call(item) for item in chunk]

    chunks = [items[i::threads] for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        done = list(pool.map(run, chunks))
    out: list[Any] = [None] * len(items)
    for i, chunk in enumerate(done):
        out[i::threads] = chunk
    return out


def test_concurrent_decisions_are_batched_and_decide_as_alone(stack: EmbeddedPDP) -> None:
    assert stack.engine is not None and len(INTENTS) > 20
    alone = [stack.engine.evaluate(DECISION_PATH, intent, timeout=10) for intent in INTENTS]
    coalescing = CoalescingEngine(stack.engine, DECISION_PATH, BATCH_PATH)
    items = INTENTS * 4
    together = _concurrently(lambda i: coalescing.evaluate(DECISION_PATH, i, timeout=10), items)
    assert together == alone * 4
    assert coalescing.decided == len(items)
    assert coalescing.calls < len(items)  # some were asked together


def test_a_batch_the_engine_fails_is_asked_input_by_input(stack: EmbeddedPDP) -> None:
    """Should the batch fail (here: a batch entrypoint the bundle lacks), each input is decided
    alone, so one input the policy fails on does not deny the others."""
    assert stack.engine is not None
    alone = [stack.engine.evaluate(DECISION_PATH, intent, timeout=10) for intent in INTENTS]
    coalescing = CoalescingEngine(stack.engine, DECISION_PATH, "gpupaas/decision/no_such_batch")
    together = _concurrently(lambda i: coalescing.evaluate(DECISION_PATH, i, timeout=10), INTENTS)
    assert together == alone
    assert coalescing.decided == len(INTENTS)


def test_an_unreachable_engine_denies_every_caller() -> None:
    engine = OpaHttpEngine(f"127.0.0.1:{free_port()}")  # nothing listens there
    point = DecisionPoint(engine, None, metrics=False)
    decisions = _concurrently(lambda i: point.decide(i, DecideOptions(timeout=5)), INTENTS)
    assert {d.outcome for d in decisions} == {Outcome.DENY}
    assert {d.reason_codes[0] for d in decisions} == {"ENGINE_UNAVAILABLE"}


def test_a_caller_past_its_deadline_gets_a_timeout(stack: EmbeddedPDP) -> None:
    assert stack.engine is not None
    coalescing = CoalescingEngine(stack.engine, DECISION_PATH, BATCH_PATH)
    with pytest.raises(EngineTimeout):
        coalescing.evaluate(DECISION_PATH, INTENTS[0], timeout=1e-6)


def test_other_paths_go_to_the_engine_as_they_are(stack: EmbeddedPDP) -> None:
    assert stack.engine is not None
    coalescing = CoalescingEngine(stack.engine, DECISION_PATH, BATCH_PATH)
    batch = {"intents": INTENTS[:3]}
    assert coalescing.evaluate(BATCH_PATH, batch, timeout=10) == stack.engine.evaluate(
        BATCH_PATH, batch, timeout=10
    )
    assert coalescing.calls == 0


def test_the_sidecar_is_coalesced_by_default_the_in_process_engine_is_not(stack: EmbeddedPDP) -> None:
    assert isinstance(stack.engine, OpaHttpEngine)
    assert isinstance(DecisionPoint(stack.engine, None, metrics=False)._single, CoalescingEngine)
    assert not isinstance(DecisionPoint(stack.engine, None, coalesce=False)._single, CoalescingEngine)
    assert WasmEngine.in_process  # DecisionPoint asks an in-process engine directly by default


def test_callers_with_short_deadlines_among_others_leave_nothing_behind(stack: EmbeddedPDP) -> None:
    """Callers whose deadlines pass while they wait or lead a batch: each gets its own answer
    or a timeout, never another's answer, and no evaluation slot is left taken (which would make
    every later caller wait)."""
    assert stack.engine is not None
    alone = {json_key(i): stack.engine.evaluate(DECISION_PATH, i, timeout=10) for i in INTENTS}
    coalescing = CoalescingEngine(stack.engine, DECISION_PATH, BATCH_PATH)

    def ask(item: tuple[int, Any]) -> Any:
        n, intent = item
        try:
            return coalescing.evaluate(DECISION_PATH, intent, timeout=0.0005 if n % 3 == 0 else 10)
        except EngineTimeout:
            return "timeout"

    items = list(enumerate(INTENTS * 6))
    answers = _concurrently(ask, items, threads=24)
    for (n, intent), answer in zip(items, answers, strict=True):
        assert answer == "timeout" or answer == alone[json_key(intent)]
        if n % 3:
            assert answer != "timeout"
    assert coalescing._in_flight == 0 and not coalescing._waiting
    assert coalescing.evaluate(DECISION_PATH, INTENTS[0], timeout=10) == alone[json_key(INTENTS[0])]


def json_key(intent: Any) -> str:
    return json.dumps(intent, sort_keys=True)


def test_no_caller_waits_past_its_deadline_for_a_stalled_opa(stack: EmbeddedPDP) -> None:
    """OPA alive but not answering: callers with short and long deadlines asking together each
    get ENGINE_TIMEOUT by their own deadline (a batch is asked by its latest-deadline caller, so
    a short-deadline caller is never held by another's longer one)."""
    assert stack.engine is not None and stack.sidecar is not None and stack.sidecar.pid is not None
    coalescing = CoalescingEngine(stack.engine, DECISION_PATH, BATCH_PATH)
    pid = stack.sidecar.pid
    assert coalescing.evaluate(DECISION_PATH, INTENTS[0], timeout=10)  # warm the connection

    def ask(n: int) -> tuple[float, float, str]:
        budget = 0.3 if n % 2 else 1.2
        started = time.monotonic()
        try:
            coalescing.evaluate(DECISION_PATH, INTENTS[n % len(INTENTS)], timeout=budget)
            outcome = "answered"
        except EngineTimeout:
            outcome = "timeout"
        return budget, time.monotonic() - started, outcome

    with frozen(pid):
        asked = _concurrently(ask, list(range(24)), threads=12)
    for budget, elapsed, outcome in asked:
        assert outcome == "timeout"
        assert elapsed < budget + 0.25, (budget, elapsed)
    assert stack.sidecar.pid == pid
    assert coalescing.evaluate(DECISION_PATH, INTENTS[0], timeout=10)  # OPA answers again


def test_a_batch_is_asked_by_its_latest_deadline(stack: EmbeddedPDP) -> None:
    """One evaluation at a time, OPA stalled: L asks (0.3 s), then A (0.6 s) and B (2 s) wait.
    When L gives up, B asks for both until its deadline; A stops waiting at its own. Were A to ask
    (the first waiting), B's deadline would hold A in OPA's call until 2 s."""
    assert stack.engine is not None and stack.sidecar is not None and stack.sidecar.pid is not None
    coalescing = CoalescingEngine(stack.engine, DECISION_PATH, BATCH_PATH, in_flight=1)
    assert coalescing.evaluate(DECISION_PATH, INTENTS[0], timeout=10)  # warm the connection
    elapsed: dict[str, float] = {}

    def ask(name: str, budget: float) -> None:
        started = time.monotonic()
        with pytest.raises(EngineTimeout):
            coalescing.evaluate(DECISION_PATH, INTENTS[0], timeout=budget)
        elapsed[name] = time.monotonic() - started

    def until(condition: Any) -> None:
        deadline = time.monotonic() + 5
        while not condition():
            assert time.monotonic() < deadline
            time.sleep(0.001)

    with frozen(stack.sidecar.pid):
        threads = []
        for name, budget, ready in (
            ("L", 0.3, lambda: coalescing._in_flight == 1),
            ("A", 0.6, lambda: len(coalescing._waiting) == 1),
            ("B", 2.0, lambda: len(coalescing._waiting) == 2),
        ):
            threads.append(threading.Thread(target=ask, args=(name, budget)))
            threads[-1].start()
            until(ready)
        for thread in threads:
            thread.join(timeout=10)
    assert elapsed["L"] < 0.3 + 0.25 and elapsed["A"] < 0.6 + 0.25, elapsed
    assert 1.9 < elapsed["B"] < 2.0 + 0.25, elapsed
    assert coalescing._in_flight == 0 and not coalescing._waiting


class _InFlight:
    """The real engine, counting the requests under way at once."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.now = self.most = 0
        self._lock = threading.Lock()

    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            return self.engine.evaluate(path, input_doc, timeout=timeout)
        finally:
            with self._lock:
                self.now -= 1


def test_the_decision_point_asks_its_sidecar_one_request_at_a_time(stack: EmbeddedPDP) -> None:
    """By default a PDP process has one request to OPA under way: the callers arriving during it
    make the next batch (two at once cost PDP + OPA 3-10% more CPU per decision)."""
    assert stack.engine is not None
    alone = [stack.engine.evaluate(DECISION_PATH, intent, timeout=10) for intent in INTENTS]
    counted = _InFlight(stack.engine)
    point = DecisionPoint(counted, None, metrics=False)  # type: ignore[arg-type]
    items = INTENTS * 4
    decisions = _concurrently(lambda i: point.decide(i, DecideOptions(timeout=10, record=False)), items)
    assert counted.most == 1
    assert [d.outcome.value for d in decisions] == [r["outcome"] for r in alone * 4]

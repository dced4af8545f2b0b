"""Concurrent single decisions asked of the engine as batch evaluations.

Through the OPA sidecar each decision was one HTTP exchange; OPA spends about as much CPU on the
request (HTTP, JSON, a query set up) as on the evaluation, and the PDP ~65 us on its side of it
(docs/performance.md). Here a caller that finds `in_flight` evaluations under way waits, and
whoever finishes one hands every input waiting (up to `most`) to one of their callers, which asks
the policy's batch entrypoint for all of them at once (`batch := [decision | some intent in
input.intents; decision := result with input as intent]`: each decided as alone). Without
concurrency every caller asks for its own input at the single entrypoint as before.

Failures stay per caller and closed: an engine error on a batch is tried again input by input
(so one input the policy fails on does not deny the others), a caller whose deadline passes gets
EngineTimeout (its answer, should it come later, is dropped), and every error reaches the caller
as the EngineError the decision point turns into a DENY.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pdp.engine.base import EngineError, EngineFailure, EngineTimeout, EngineUnavailable, PolicyEngine


class _Waiting:
    __slots__ = ("batch", "deadline", "done", "error", "input", "result")

    def __init__(self, input_doc: Any, deadline: float) -> None:
        self.input = input_doc
        self.deadline = deadline
        self.done = threading.Event()  # answered, or `batch` handed over to this caller
        self.batch: list[_Waiting] | None = None
        self.result: Any = None
        self.error: EngineError | None = None


class CoalescingEngine:
    """Evaluates `single` by way of `batch` for concurrent callers; other paths go to `engine`
    as they are.

    A caller that finds fewer than `in_flight` evaluations running makes its own at once (no
    thread hand-off when there is no concurrency); the others wait, and whoever finishes an
    evaluation hands everything waiting (up to `most`) to the one of them with the latest
    deadline, which asks for all of it in one batch, bounded by that deadline. `in_flight`:
    evaluations at once (OPA evaluates each on one core). One per PDP process by default: the
    callers that arrive during an evaluation make the next batch, so fewer, larger requests
    (OPA's CPU per decision falls with the batch's size) and fewer HTTP exchanges for the PDP;
    with two at once, PDP + OPA spent 3-10% more CPU per decision (docs/performance.md,
    "The sidecar's transport and batches")."""

    def __init__(
        self, engine: PolicyEngine, single: str, batch: str, *, in_flight: int = 1, most: int = 32
    ) -> None:
        self.engine = engine
        self._single, self._batch = single, batch
        self._in_flight_most, self._most = in_flight, most
        self._lock = threading.Lock()
        self._waiting: list[_Waiting] = []
        self._in_flight = 0
        # Counts, for tests and benchmarks: evaluations asked of the engine, inputs decided.
        self.calls = 0
        self.decided = 0

    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        if path != self._single:
            return self.engine.evaluate(path, input_doc, timeout=timeout)
        me = _Waiting(input_doc, time.monotonic() + timeout)
        with self._lock:
            if self._in_flight < self._in_flight_most:
                self._in_flight += 1
                me.batch = [me]
            else:
                self._waiting.append(me)
        if me.batch is None and not me.done.wait(max(timeout, 0.0)):
            with self._lock:
                if me in self._waiting:
                    self._waiting.remove(me)
                    raise EngineTimeout(f"the policy engine did not answer within {timeout:.3f}s")
            # Taken into a batch meanwhile: handed to this caller to ask, or being asked by
            # another (whose answer for this input comes too late to use).
            if me.batch is None:
                raise EngineTimeout(f"the policy engine did not answer within {timeout:.3f}s")
        if me.batch is not None:
            self._lead(me.batch)
        if me.error is not None:
            raise me.error
        return me.result

    def _lead(self, batch: list[_Waiting]) -> None:
        """Ask for `batch`, answer its callers, then hand what waits to one of them."""
        try:
            self._decide(batch)
        finally:
            with self._lock:
                taken, self._waiting = self._waiting[: self._most], self._waiting[self._most :]
                # The caller with the latest deadline asks, for as long as that deadline allows:
                # no caller waits past its own (the others stop waiting at theirs).
                leader = max(taken, key=lambda w: w.deadline) if taken else None
                if leader is not None:
                    leader.batch = taken
                else:
                    self._in_flight -= 1
            if leader is not None:
                leader.done.set()

    def _decide(self, taken: list[_Waiting]) -> None:
        budget = max(w.deadline for w in taken) - time.monotonic()
        try:
            if len(taken) == 1:
                self._answer(taken[0], budget)
                return
            self.calls += 1
            results = self.engine.evaluate(self._batch, {"intents": [w.input for w in taken]}, timeout=budget)
            if not isinstance(results, list) or len(results) != len(taken):
                raise EngineFailure("the batch result does not match the inputs")
        except (EngineTimeout, EngineUnavailable) as exc:
            self._fail(taken, exc)  # each alone would not have fared better
            return
        except EngineError:
            for waiting in taken:  # which input the engine failed on: ask them one by one
                self._answer(waiting, waiting.deadline - time.monotonic())
            return
        except Exception as exc:  # an engine bug is still an engine failure: fail closed
            self._fail(taken, EngineFailure(f"{type(exc).__name__}: {exc}"))
            return
        self.decided += len(taken)
        for waiting, result in zip(taken, results, strict=True):
            waiting.result = result
            if waiting.batch is None:
                waiting.done.set()

    def _answer(self, waiting: _Waiting, budget: float) -> None:
        self.calls += 1
        try:
            if budget <= 0:
                raise EngineTimeout("the caller's deadline passed before its turn")
            waiting.result = self.engine.evaluate(self._single, waiting.input, timeout=budget)
            self.decided += 1
        except EngineError as exc:
            waiting.error = exc
        except Exception as exc:
            waiting.error = EngineFailure(f"{type(exc).__name__}: {exc}")
        if waiting.batch is None:
            waiting.done.set()

    @staticmethod
    def _fail(taken: list[_Waiting], error: EngineError) -> None:
        for waiting in taken:
            waiting.error = error
            if waiting.batch is None:
                waiting.done.set()

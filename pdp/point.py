"""The policy decision point: one decision function, with an options object.

Every caller goes through `DecisionPoint.decide`: the gRPC servicer, the CLI, in-process Python
callers and the enforcement points built on them, so a rule is written once and holds everywhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pdp import decision as render
from pdp.decision import Decision
from pdp.engine.base import EngineError, EngineFailure, EngineTimeout, PolicyEngine
from pdp.engine.coalesce import CoalescingEngine
from pdp.intents import validate_intent
from pdp.records.log import DecisionLog

if TYPE_CHECKING:
    from pdp.metrics import DecisionMetrics

DECISION_PATH = "gpupaas/decision/result"
BATCH_PATH = "gpupaas/decision/batch"

# Below this much time left there is no point asking the engine: answer DENY (timeout) at once.
_MIN_ENGINE_BUDGET = 0.002
# Kept back from the caller's deadline to render, record and send the answer: a fixed floor plus
# a share of the budget, since thread scheduling delays grow with load.
_REPLY_MARGIN = 0.005
_REPLY_SHARE = 0.05


def uuid7_text(unix_ms: int, raw: bytes) -> str:
    """A version 7 UUID (RFC 9562) as text: `unix_ms` (milliseconds since the epoch) in its first
    48 bits, then the version, the variant and 74 bits of `raw` (16 random bytes), written in hex
    in 8-4-4-4-12 groups."""
    b = bytearray(raw)
    b[0:6] = unix_ms.to_bytes(6, "big")
    b[6] = b[6] & 0x0F | 0x70
    b[8] = b[8] & 0x3F | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def decision_ids(count: int, decided_at: datetime) -> list[str]:
    """`count` version 7 UUIDs stamped with `decided_at`, from one read of the system's random
    source. Time-ordered, not random (version 4) as they were: the decision log's indexes on the
    id (SQLite's and PostgreSQL's) then grow at their end instead of at a random page per record,
    which halved the log writer's CPU per record (bench/results/webhook-capacity-2026-12-05.md)."""
    raw = os.urandom(16 * count)
    unix_ms = int(decided_at.timestamp() * 1000)
    return [uuid7_text(unix_ms, raw[i : i + 16]) for i in range(0, 16 * count, 16)]


@dataclass(frozen=True)
class DecideOptions:
    """How to decide.

    timeout: seconds the whole decision may take when the caller has no deadline of its own.
    deadline: an absolute `time.monotonic()` deadline (a gRPC caller's); wins over timeout.
    record: append the decision to the decision log.
    validated: the caller has validated the intent already (an enforcement point that checked the
        workload and built the rest itself); skips the schema check, the largest cost of a
        placement over thousands of nodes.
    entry_point: where the intent came in (grpc, grpc_batch, http, webhook, extender, lifecycle,
        cli, embedded), the `entry_point` label of the decision metrics (pdp/metrics/decision_point.py).
    principal: who asked, as a decision front authenticated them (pdp/api/auth.py: admin,
        tenant:NAME, substrate:NAME, local), recorded with the decision; None where no front
        stands between the caller and the point (in-process callers, the CLI).
    """

    timeout: float = 1.0
    deadline: float | None = None
    record: bool = True
    validated: bool = False
    entry_point: str = "embedded"
    principal: str | None = None

    def budget(self, now: float) -> float:
        left = self.deadline - now if self.deadline is not None else self.timeout
        return left - _REPLY_MARGIN - max(left, 0) * _REPLY_SHARE


class DecisionPoint:
    def __init__(
        self,
        engine: PolicyEngine,
        decision_log: DecisionLog | None = None,
        *,
        metrics: bool = True,
        coalesce: bool | None = None,
    ) -> None:
        """`metrics=False`: a process that decides once and exits (`pdp decide`) is never
        scraped; it skips loading prometheus_client, a fifth of its start-up. `coalesce`: ask the
        engine for concurrent decisions in batches (pdp/engine/coalesce.py); by default for an
        engine in another process (the OPA sidecar), whose cost per request it saves."""
        self.engine = engine
        if coalesce is None:
            coalesce = not getattr(engine, "in_process", False)
        self._single: PolicyEngine = (
            CoalescingEngine(engine, DECISION_PATH, BATCH_PATH) if coalesce else engine
        )
        self.decision_log = decision_log
        self._metrics: DecisionMetrics | None = None
        if metrics:
            from pdp.metrics import decisions

            self._metrics = decisions
        # Called with each intent and its decision once answered (pdp/replay/shadow.py); must
        # return at once and never raise: it is on the answer path.
        self.shadow: Callable[[Mapping[str, Any], Decision], None] | None = None

    @property
    def waits_on_io(self) -> bool:
        """Whether deciding may block on I/O (a sidecar call, a durable record's commit) rather
        than only use the CPU, as the in-process wasm engine does."""
        durable = self.decision_log is not None and self.decision_log.integrity.durable
        return durable or not getattr(self.engine, "in_process", False)

    def decide(self, intent: Mapping[str, Any], options: DecideOptions | None = None) -> Decision:
        """Decide one intent. Raises InvalidIntent for a malformed intent; engine failures are
        DENY decisions with an ENGINE_* reason, never exceptions."""
        options = options or DecideOptions()
        if not options.validated:
            validate_intent(intent)
        return self._decide([intent], DECISION_PATH, options, batch=False)[0]

    def decide_batch(
        self, intents: Sequence[Mapping[str, Any]], options: DecideOptions | None = None
    ) -> list[Decision]:
        """Decide many intents in one engine evaluation, so all of them see one bundle revision."""
        options = options or DecideOptions()
        for i, intent in enumerate(intents):
            validate_intent(intent, prefix=["intents", i])
        if not intents:
            return []
        return self._decide(intents, BATCH_PATH, options, batch=True)

    def _decide(
        self, intents: Sequence[Mapping[str, Any]], path: str, options: DecideOptions, *, batch: bool
    ) -> list[Decision]:
        started = time.monotonic()
        decided_at = datetime.now(UTC)
        budget = options.budget(started)
        results: list[Any] | None = None
        error: EngineError | None = None
        if budget < _MIN_ENGINE_BUDGET:
            error = EngineTimeout(f"the caller's deadline left {max(budget, 0) * 1000:.1f} ms")
        else:
            try:
                if batch:
                    results = self.engine.evaluate(path, {"intents": list(intents)}, timeout=budget)
                    if not isinstance(results, list) or len(results) != len(intents):
                        raise EngineFailure("the batch result does not match the intents")
                else:
                    results = [self._single.evaluate(path, intents[0], timeout=budget)]
            except EngineError as exc:
                error = exc
            except Exception as exc:  # an engine bug is still an engine failure: fail closed
                error = EngineFailure(f"{type(exc).__name__}: {exc}")
        elapsed_ms = (time.monotonic() - started) * 1000
        if error is not None and self._metrics is not None:
            self._metrics.engine_error(options.entry_point, error.code)
        decisions = []
        ids = decision_ids(len(intents), decided_at)
        for i, intent in enumerate(intents):
            decision_id = ids[i]
            if error is not None or results is None:
                d = render.engine_failure(
                    error or EngineFailure("no result"),
                    intent,
                    decision_id=decision_id,
                    decided_at=decided_at,
                    evaluation_ms=elapsed_ms,
                )
            else:
                d = render.from_engine_result(
                    results[i],
                    intent,
                    decision_id=decision_id,
                    decided_at=decided_at,
                    evaluation_ms=elapsed_ms,
                )
            decisions.append(d)
            if self._metrics is not None:
                self._metrics.decided(
                    options.entry_point,
                    d.kind,
                    d.outcome.value,
                    d.reason_codes,
                    time.monotonic() - started,
                    d.bundle_revision,
                )
            if options.record and self.decision_log is not None:
                canonical = render.canonical_intent(intent)
                self.decision_log.append(d, render.digest_of(canonical), canonical, options.principal)
            if self.shadow is not None and error is None:
                self.shadow(intent, d)
        return decisions

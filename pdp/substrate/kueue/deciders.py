"""How the admission check controller asks the PDP: in process (a DecisionPoint, recording into
its decision log) or over gRPC (the PDP server records). Either way one batch per Workload, so
all of its PodSets are decided under one bundle revision, and either way the answer is the one
decision shape of every enforcement point (pdp.decision.Decision)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import grpc

from pdp.api.client import PdpClient
from pdp.decision import Decision
from pdp.intents import InvalidIntent
from pdp.point import DecideOptions, DecisionPoint


class PdpUnavailable(RuntimeError):
    """The PDP could not be asked (not reachable, timed out): the check fails closed."""


class Decider(Protocol):
    def decide(self, intents: Sequence[dict[str, Any]]) -> list[Decision]:
        """One decision per intent. Raises InvalidIntent or PdpUnavailable."""
        ...


class PointDecider:
    """Engine failures come back as DENY decisions with a `pdp.engine` reason, never as ALLOW."""

    def __init__(self, point: DecisionPoint, *, timeout: float = 2.0) -> None:
        self.point = point
        self.timeout = timeout

    def decide(self, intents: Sequence[dict[str, Any]]) -> list[Decision]:
        return self.point.decide_batch(intents, DecideOptions(timeout=self.timeout))


class GrpcDecider:
    def __init__(self, client: PdpClient, *, timeout: float = 2.0) -> None:
        self.client = client
        self.timeout = timeout

    def decide(self, intents: Sequence[dict[str, Any]]) -> list[Decision]:
        try:
            documents = self.client.decide_batch(list(intents), timeout=self.timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidIntent("intent", details or "invalid") from exc
            raise PdpUnavailable(f"PDP at gRPC {code.name if code else '?'}: {details}") from exc
        try:
            return [Decision.from_dict(d) for d in documents]
        except ValueError as exc:  # a PDP speaking another protocol: nothing to enforce, fail closed
            raise PdpUnavailable(f"PDP at gRPC answered no decision: {exc}") from exc

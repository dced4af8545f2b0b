"""The DecisionService servicer: unpack, call the decision point, build the reply."""

from __future__ import annotations

import time
from typing import NoReturn

import grpc

from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
from pdp._proto.gpupaas.pdp.v1 import pdp_pb2_grpc
from pdp.api.translate import decision_to_proto, intent_from_proto
from pdp.intents import InvalidIntent
from pdp.point import DecideOptions, DecisionPoint
from pdp.schemas.errors import shorten

# The details of an error travel in the grpc-message trailer, percent-encoded (up to 3 bytes per
# character), and a client drops trailers over 16 KiB as RESOURCE_EXHAUSTED: whatever a message
# echoes, it stays far below that.
MAX_DETAILS = 1024


def invalid_argument(context: grpc.ServicerContext, exc: InvalidIntent) -> NoReturn:
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, shorten(str(exc), MAX_DETAILS))


def options_for(context: grpc.ServicerContext, default_timeout: float) -> DecideOptions:
    """Honour the caller's deadline; without one, the server's default timeout applies."""
    remaining = context.time_remaining()
    if remaining is None:
        return DecideOptions(timeout=default_timeout)
    return DecideOptions(deadline=time.monotonic() + min(remaining, default_timeout))


class DecisionServicer(pdp_pb2_grpc.DecisionServiceServicer):
    def __init__(self, point: DecisionPoint, *, default_timeout: float = 1.0) -> None:
        self.point = point
        self.default_timeout = default_timeout

    def Decide(self, request: pb.DecideRequest, context: grpc.ServicerContext) -> pb.DecideResponse:
        try:
            intent = intent_from_proto(request.intent)
            decision = self.point.decide(intent, options_for(context, self.default_timeout))
        except InvalidIntent as exc:
            invalid_argument(context, exc)
        return pb.DecideResponse(decision=decision_to_proto(decision))

    def DecideBatch(
        self, request: pb.DecideBatchRequest, context: grpc.ServicerContext
    ) -> pb.DecideBatchResponse:
        try:
            intents = []
            for i, message in enumerate(request.intents):
                try:
                    intents.append(intent_from_proto(message))
                except InvalidIntent as exc:
                    raise InvalidIntent(f"intents[{i}].{exc.field}", exc.problem) from exc
            decisions = self.point.decide_batch(intents, options_for(context, self.default_timeout))
        except InvalidIntent as exc:
            invalid_argument(context, exc)
        return pb.DecideBatchResponse(decisions=[decision_to_proto(d) for d in decisions])

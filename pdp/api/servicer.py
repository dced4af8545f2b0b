"""The DecisionService servicer: authenticate, unpack, authorize, call the decision point, build
the reply. Who may ask what: pdp/api/auth.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError, Message

from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
from pdp._proto.gpupaas.pdp.v1 import pdp_pb2_grpc
from pdp.api.auth import Forbidden, Unauthenticated, authenticate, authorize
from pdp.api.token_file import BearerTokens, Principal
from pdp.api.translate import fill_decision, intent_from_proto
from pdp.intents import InvalidIntent
from pdp.point import DecideOptions, DecisionPoint
from pdp.schemas.errors import shorten

# The details of an error travel in the grpc-message trailer, percent-encoded (up to 3 bytes per
# character), and a client drops trailers over 16 KiB as RESOURCE_EXHAUSTED: whatever a message
# echoes, it stays far below that.
MAX_DETAILS = 1024


def invalid_argument(context: grpc.ServicerContext, exc: InvalidIntent) -> NoReturn:
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, shorten(str(exc), MAX_DETAILS))


@dataclass(frozen=True)
class MalformedRequest:
    """Stands in for a request whose bytes are not the method's message."""

    message_type: str
    error: str


def tolerant(message_type: type[Message]) -> Callable[[bytes], Any]:
    """A request deserializer that never raises: gRPC answers a deserializer's exception with
    INTERNAL ("Exception deserializing request!"), a server error for what is the caller's."""

    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return MalformedRequest(message_type.DESCRIPTOR.full_name, str(exc))

    return parse


def refuse_malformed(request: object, context: grpc.ServicerContext) -> None:
    if isinstance(request, MalformedRequest):
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            shorten(f"the request is not a valid {request.message_type}: {request.error}", MAX_DETAILS),
        )


def options_for(
    context: grpc.ServicerContext,
    default_timeout: float,
    entry_point: str = "grpc",
    principal: Principal | None = None,
) -> DecideOptions:
    """Honour the caller's deadline; without one, the server's default timeout applies."""
    remaining = context.time_remaining()
    who = None if principal is None else str(principal)
    if remaining is None:
        return DecideOptions(timeout=default_timeout, entry_point=entry_point, principal=who)
    deadline = time.monotonic() + min(remaining, default_timeout)
    return DecideOptions(deadline=deadline, entry_point=entry_point, principal=who)


def authenticated(tokens: BearerTokens | None, context: grpc.ServicerContext) -> Principal:
    """The caller's principal from its `authorization: Bearer TOKEN` metadata (pdp/api/auth.py)."""
    authorization = next(
        (str(value) for key, value in context.invocation_metadata() if key == "authorization"), None
    )
    try:
        return authenticate(tokens, authorization)
    except Unauthenticated as exc:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))


def authorized(principal: Principal, intents: list[Any], context: grpc.ServicerContext) -> None:
    try:
        authorize(principal, intents)
    except Forbidden as exc:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, shorten(str(exc), MAX_DETAILS))


class DecisionServicer(pdp_pb2_grpc.DecisionServiceServicer):
    def __init__(
        self, point: DecisionPoint, *, default_timeout: float = 1.0, tokens: BearerTokens | None = None
    ) -> None:
        """`tokens`: the callers' bearer tokens; None only on loopback (PdpServer refuses else),
        where every caller is `local`."""
        self.point = point
        self.default_timeout = default_timeout
        self.tokens = tokens

    def Decide(self, request: pb.DecideRequest, context: grpc.ServicerContext) -> pb.DecideResponse:
        principal = authenticated(self.tokens, context)
        refuse_malformed(request, context)
        try:
            intent = intent_from_proto(request.intent)
            authorized(principal, [intent], context)
            decision = self.point.decide(
                intent, options_for(context, self.default_timeout, principal=principal)
            )
        except InvalidIntent as exc:
            invalid_argument(context, exc)
        response = pb.DecideResponse()
        fill_decision(response.decision, decision)
        return response

    def DecideBatch(
        self, request: pb.DecideBatchRequest, context: grpc.ServicerContext
    ) -> pb.DecideBatchResponse:
        principal = authenticated(self.tokens, context)
        refuse_malformed(request, context)
        try:
            intents = []
            for i, message in enumerate(request.intents):
                try:
                    intents.append(intent_from_proto(message))
                except InvalidIntent as exc:
                    raise InvalidIntent(f"intents[{i}].{exc.field}", exc.problem) from exc
            authorized(principal, intents, context)
            decisions = self.point.decide_batch(
                intents, options_for(context, self.default_timeout, "grpc_batch", principal)
            )
        except InvalidIntent as exc:
            invalid_argument(context, exc)
        response = pb.DecideBatchResponse()
        for d in decisions:
            fill_decision(response.decisions.add(), d)
        return response


def add_to_server(servicer: DecisionServicer, server: grpc.Server) -> None:
    """Register `servicer` like the generated add_DecisionServiceServicer_to_server, with request
    deserializers that turn bytes that do not parse into INVALID_ARGUMENT."""
    handlers = {
        "Decide": grpc.unary_unary_rpc_method_handler(
            servicer.Decide,
            request_deserializer=tolerant(pb.DecideRequest),
            response_serializer=pb.DecideResponse.SerializeToString,
        ),
        "DecideBatch": grpc.unary_unary_rpc_method_handler(
            servicer.DecideBatch,
            request_deserializer=tolerant(pb.DecideBatchRequest),
            response_serializer=pb.DecideBatchResponse.SerializeToString,
        ),
    }
    name = pb.DESCRIPTOR.services_by_name["DecisionService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)

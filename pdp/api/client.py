"""A small gRPC client for the PDP, speaking intent and decision documents."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from pdp._proto.gpupaas.pdp.v1 import pdp_pb2 as pb
from pdp._proto.gpupaas.pdp.v1 import pdp_pb2_grpc
from pdp.api.translate import decision_from_proto, intent_to_proto


class PdpClient:
    def __init__(
        self,
        address: str,
        *,
        timeout: float = 2.0,
        ca_file: Path | None = None,
        token: str | None = None,
        token_file: Path | None = None,
    ) -> None:
        """Plaintext, or TLS verifying the server against `ca_file` (a PEM bundle) when given.
        `token` (or the content of `token_file`, read now): the bearer token sent with every call,
        which a PDP off loopback requires (pdp/api/auth.py)."""
        if token is None and token_file is not None:
            token = token_file.read_text().strip()
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        if ca_file is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca_file.read_bytes())
            self._channel = grpc.secure_channel(address, credentials)
        else:
            self._channel = grpc.insecure_channel(address)
        self._stub = pdp_pb2_grpc.DecisionServiceStub(self._channel)
        self.timeout = timeout

    def decide(self, intent: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        reply = self._stub.Decide(
            pb.DecideRequest(intent=intent_to_proto(intent)),
            timeout=timeout or self.timeout,
            metadata=self._metadata,
        )
        return decision_from_proto(reply.decision)

    def decide_batch(
        self, intents: Sequence[dict[str, Any]], *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        request = pb.DecideBatchRequest(intents=[intent_to_proto(i) for i in intents])
        reply = self._stub.DecideBatch(request, timeout=timeout or self.timeout, metadata=self._metadata)
        return [decision_from_proto(d) for d in reply.decisions]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> PdpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""OPA over its REST Data API (POST /v1/data/<path>), the sidecar engine.

One pooled keep-alive client per engine; httpx is thread-safe, so the gRPC worker threads share
it. Every call gets the time left in the caller's deadline as its timeout.
"""

from __future__ import annotations

from typing import Any

import httpx

from pdp.engine.base import EngineFailure, EngineTimeout, EngineUnavailable, NoActiveBundle
from pdp.opa.http import http_client


class OpaHttpEngine:
    def __init__(self, addr: str, *, max_connections: int = 64) -> None:
        """`addr`: "unix:///path/opa.sock", "host:port" or an http(s) URL."""
        self.addr = addr
        self._client = http_client(addr, limits=httpx.Limits(max_connections=max_connections))

    def evaluate(self, path: str, input_doc: Any, *, timeout: float) -> Any:
        try:
            resp = self._client.post(
                f"/v1/data/{path}",
                json={"input": input_doc},
                timeout=httpx.Timeout(timeout),
            )
        except httpx.TimeoutException as exc:
            raise EngineTimeout(f"OPA at {self.addr} did not answer within {timeout:.3f}s") from exc
        except httpx.TransportError as exc:
            raise EngineUnavailable(f"OPA at {self.addr} is unreachable: {exc}") from exc
        if resp.status_code != 200:
            raise EngineFailure(f"OPA answered HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            body = resp.json()
        except ValueError as exc:
            raise EngineFailure("OPA answered with a body that is not JSON") from exc
        if "result" not in body:
            # Undefined: OPA is up but has no active bundle (or the rule does not exist).
            raise NoActiveBundle(f"OPA at {self.addr} has no decision at {path}: no active bundle")
        return body["result"]

    def close(self) -> None:
        self._client.close()

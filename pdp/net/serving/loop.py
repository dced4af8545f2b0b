"""The event loop of a served front: uvloop, serving through the accept gate (serving/)."""

from __future__ import annotations

import asyncio
from typing import Any

import uvloop

from pdp.net.serving.gate import GatedServer


def loop_factory(handshake_timeout: float, max_connections: int) -> type[asyncio.AbstractEventLoop]:
    """uvloop, with TLS handshakes bounded (uvicorn does not pass `ssl_handshake_timeout`) and the
    server's connections kept within a budget at accept (GatedServer)."""

    class Loop(uvloop.Loop):
        async def create_server(self, *args: Any, **kwargs: Any) -> Any:
            sock = kwargs.get("sock")
            if sock is None or len(args) != 1:
                if kwargs.get("ssl") is not None:
                    kwargs.setdefault("ssl_handshake_timeout", handshake_timeout)
                return await super().create_server(*args, **kwargs)
            return GatedServer(
                self,
                sock,
                args[0],
                ssl_context=kwargs.get("ssl"),
                handshake_timeout=handshake_timeout,
                cap=max_connections,
                backlog=kwargs.get("backlog", 2048),
            )

    return Loop

"""A response's head and body in one write (the decision fronts' serving layer, serving/)."""

from __future__ import annotations

import asyncio
from typing import Any


class OneWrite:
    """The transport of one response, holding its head until the body comes so that both go out
    in one write: uvicorn writes them separately, which over TLS is two records and two send
    calls per response. Over plain TCP the two go out in one vectored send (uvloop's
    `writelines`), without copying a large body (the scheduler extender's answers are ~1 MB)
    behind its head. Everything else goes to the transport."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._held = False
        self._tls = transport.get_extra_info("sslcontext") is not None

    def write(self, data: bytes) -> None:
        if not self._held and data.startswith(b"HTTP/") and not data.startswith(b"HTTP/1.1 100"):
            self._held, self._head = True, data
            return
        if self._head is not None:
            head, self._head = self._head, None
            if not self._tls:
                self._transport.writelines((head, data))
                return
            data = head + data
        self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

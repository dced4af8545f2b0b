"""The protocol of a served connection: uvicorn's, with a deadline for each phase of a request,
client certificates checked, and each request's scope naming when it arrived, the queue it joined
and who called (serving/)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pdp.net.clientauth import ClientAuth, peer_names
from pdp.net.serving.one_write import OneWrite

# Named as before the split into a package: the name operators filter on (docs/enforcement.md).
log = logging.getLogger("pdp.net.serving")
ARRIVED = "gpupaas.arrived"
"""The scope key holding when the request's first byte was parsed (time.monotonic())."""
QUEUED = "gpupaas.queued"
"""The scope key holding how many requests of the server were unanswered when its headers were
parsed: the queue it joins when routes run on the event loop."""
CALLER = "gpupaas.caller"
"""The scope key holding who called as the connection's client certificate says
(ClientAuth.caller: `substrate:NAME`); None without client authentication."""
DEFAULT_HEADER_TIMEOUT = 5.0
DEFAULT_BODY_TIMEOUT = 10.0


@dataclass(frozen=True)
class Deadlines:
    """Seconds a connection may take for each phase before it is closed."""

    header: float = DEFAULT_HEADER_TIMEOUT
    """For the request line and headers (and the TLS handshake), from the connection's start or
    the request's first byte."""
    body: float = DEFAULT_BODY_TIMEOUT
    """For the body, from the end of the headers."""


class BudgetSlot(Protocol):
    """The connection's place in its server's budget (gate.py): told when the client sent
    something, released when the connection ends."""

    def touch(self) -> None: ...

    def release(self) -> None: ...


class BudgetedProtocol(HttpToolsProtocol):
    """uvicorn's protocol with a deadline for each phase of a request (`deadlines`), telling its
    slot in the budget when the client sent something and whether a whole request is being
    answered."""

    deadlines = Deadlines()
    client_auth: ClientAuth | None = None
    caller: str | None = None  # as the client certificate names it (with client_auth)
    slot: BudgetSlot | None = None  # set by the accept gate
    _timer: asyncio.TimerHandle | None = None
    _in_headers = False
    _whole = False  # the current request was received whole and is being answered

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.client_auth is not None:
            peer = transport.get_extra_info("peercert")
            if not self.client_auth.admits(peer):
                # The CA signed it (the handshake verified that), but for another client: closed
                # before a byte of a request is read (connection_lost releases the slot).
                names = ", ".join(sorted(peer_names(peer or {}))) or "no name"
                log.warning("client certificate of %s refused: it names no allowed client", names)
                transport.abort()
                return
            self.caller = self.client_auth.caller(peer)
        # A connection's first request must arrive within the header deadline, counted from now:
        # resetting it at the first byte would let a client hold it by dribbling.
        self._in_headers = True
        self._arm(self.deadlines.header)

    @property
    def answering(self) -> bool:
        return self._whole and self.cycle is not None and not self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        if self.slot is not None:
            self.slot.touch()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        scope = cast("dict[str, Any]", self.scope)
        scope[ARRIVED], scope[CALLER] = time.monotonic(), self.caller
        self._whole = False
        if not self._in_headers:  # a later request on a keep-alive connection
            self._in_headers = True
            self._arm(self.deadlines.header)

    def on_headers_complete(self) -> None:
        cast("dict[str, Any]", self.scope)[QUEUED] = len(self.tasks)
        self._in_headers = False
        self._arm(self.deadlines.body)
        super().on_headers_complete()
        if self.cycle is not None and not isinstance(self.cycle.transport, OneWrite):
            self.cycle.transport = OneWrite(self.cycle.transport)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._whole = True

    def on_response_complete(self) -> None:
        # Idle from now: the keep-alive timeout (uvicorn's) runs, and the budget counts the quiet.
        self._whole = False
        if self.slot is not None:
            self.slot.touch()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.slot is not None:
            self.slot.release()
        super().connection_lost(exc)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_class(deadlines: Deadlines, client_auth: ClientAuth | None = None) -> type[asyncio.Protocol]:
    """`client_auth`: each request's scope names the caller (CALLER); with names, connections
    whose client certificate names none of them are closed."""
    attrs = {"deadlines": deadlines, "client_auth": client_auth}
    return type("BudgetedProtocol", (BudgetedProtocol,), attrs)

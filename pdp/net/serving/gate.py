"""The budget of open connections, kept at accept (serving/): a connection beyond it evicts the
quietest one not being answered, or is reset when every one is."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
from collections import OrderedDict
from collections.abc import Callable

from pdp.net.serving.protocol import BudgetedProtocol

# Named as before the split into a package: the name operators filter on.
log = logging.getLogger("pdp.net.serving")
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, keeps no TIME_WAIT
_ACCEPTS_PER_WAKEUP = 64


class Slot:
    """One accepted connection as the budget sees it: how recently it sent anything, whether a
    whole request of it is being answered, how to close it."""

    __slots__ = ("gate", "handshake", "protocol", "released")

    def __init__(self, gate: GatedServer) -> None:
        self.gate = gate
        self.handshake: asyncio.Task[None] | None = None
        self.protocol: BudgetedProtocol | None = None
        self.released = False

    def touch(self) -> None:
        if not self.released:
            self.gate.quiet.move_to_end(self)

    @property
    def answering(self) -> bool:
        return self.protocol is not None and self.protocol.answering

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.gate.open -= 1
            del self.gate.quiet[self]

    def evict(self) -> None:
        self.release()
        # The protocol is made before the TLS handshake, and has its transport only after it.
        transport = getattr(self.protocol, "transport", None)
        if transport is not None:
            if not transport.is_closing():
                transport.close()
        elif self.handshake is not None:
            self.handshake.cancel()  # connect_accepted_socket closes the socket when cancelled


class GatedServer:
    """Serves connections accepted from `sock` within a budget of `cap` handshaking or open
    connections: beyond it the quietest connection not being answered is closed to make room,
    and a connection is reset at accept only when all `cap` are being answered. What uvicorn
    needs of an asyncio Server: close, wait_closed."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        *,
        ssl_context: ssl.SSLContext | None,
        handshake_timeout: float,
        cap: int,
        backlog: int,
    ) -> None:
        self.loop, self.sock, self.factory = loop, sock, factory
        self.ssl_context, self.handshake_timeout, self.cap = ssl_context, handshake_timeout, cap
        self.open = 0
        self.refused = 0
        self.evicted = 0
        # Every open connection, the one that sent something longest ago first.
        self.quiet: OrderedDict[Slot, None] = OrderedDict()
        self.sockets = [sock]
        self._handshakes: set[asyncio.Task[None]] = set()
        sock.listen(backlog)
        sock.setblocking(False)
        loop.add_reader(sock.fileno(), self._accept)
        self._serving = True

    def _accept(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, ...: keep serving what is open
                log.warning("accept failed: %s", exc)
                return
            if self.open >= self.cap and not self._make_room():
                self.refused += 1
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                conn.close()
                continue
            self.open += 1
            slot = Slot(self)
            self.quiet[slot] = None
            conn.setblocking(False)
            task = self.loop.create_task(self._serve(conn, slot))
            slot.handshake = task
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    def _make_room(self) -> bool:
        """Close the quietest connection not being answered; False if every one is."""
        for slot in self.quiet:
            if not slot.answering:
                slot.evict()
                self.evicted += 1
                return True
        return False

    async def _serve(self, conn: socket.socket, slot: Slot) -> None:
        def protocol() -> asyncio.Protocol:
            made = self.factory()
            if isinstance(made, BudgetedProtocol):
                made.slot = slot
                slot.protocol = made
            return made

        timeout = self.handshake_timeout if self.ssl_context is not None else None
        try:
            await self.loop.connect_accepted_socket(
                protocol, conn, ssl=self.ssl_context, ssl_handshake_timeout=timeout
            )
        except BaseException:
            # A failed, timed-out or evicted handshake never reaches the protocol's connection_lost.
            slot.release()
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        if self._serving:
            self._serving = False
            self.loop.remove_reader(self.sock.fileno())
            for task in list(self._handshakes):
                task.cancel()

    async def wait_closed(self) -> None:
        if self._handshakes:
            await asyncio.wait(list(self._handshakes), timeout=1)

    def is_serving(self) -> bool:
        return self._serving

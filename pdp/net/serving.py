"""uvicorn as the server of the decision fronts (the HTTP decision API, the webhook, the
scheduler extender): its protocol with per-phase read deadlines, its loop with a TLS handshake
deadline and a connection budget applied at accept, the listening socket, and a certificate that
can change under it.

Connections that send nothing, or half a request, must not take a front down (issue 28: ~256 of
them turned every `/v1/decide` into a 503). The design, the simplest that holds 1,000 of them:

- Nothing slow holds a thread. uvicorn reads and parses on the event loop (uvloop, httptools); a
  request reaches a worker thread only once its body is complete. A held connection costs a
  descriptor and a few hundred bytes, not a thread.
- Every phase of a connection has a deadline (`Deadlines`): the request line and headers
  (`header_timeout`, counted from the connection's start or the request's first byte; it also
  bounds the TLS handshake), the body (`body_timeout`, from the end of the headers) and keep-alive
  idleness between requests (uvicorn's `timeout_keep_alive`). A client that stops sending is
  dropped when its phase's deadline passes.
- A budget of `max_connections` open connections (handshaking included), kept at accept. A
  connection beyond it first evicts the open connection that has been quiet longest among those
  not being answered (never sent a byte, mid-handshake, mid-headers, mid-body, or idle between
  requests): an attacker's held connections are the quietest, a client's new connection sends its
  request at once. Only when every connection in the budget has a whole request being answered is
  the new one reset, before any TLS work (under overload the handshakes of new connections are
  what the loop would spend its time on): the client sees a refused call at once (the API server
  fails the call, with `failurePolicy: Fail` a rejection), and the requests being answered finish.

uvicorn's own `limit_concurrency` (a 503 beyond that many connections and requests, after the TLS
handshake) stays as a backstop above the budget.

With client authentication (clientauth.py) the handshake itself refuses a client without a
certificate of the client CA, and the protocol closes a connection whose certificate names no
allowed client as soon as the handshake is done, before reading a byte of it. Each request's
scope then names the caller as its certificate does (`CALLER`), for the decision log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pdp.net.clientauth import ClientAuth, peer_names
from pdp.net.listen import ListenError
from pdp.net.servingcert import ServingCertificate, require_client_certificate

log = logging.getLogger(__name__)
ARRIVED = "gpupaas.arrived"
"""The scope key holding when the request's first byte was parsed (time.monotonic())."""
QUEUED = "gpupaas.queued"
"""The scope key holding how many requests of the server were unanswered when its headers were
parsed: the queue it joins when routes run on the event loop."""
CALLER = "gpupaas.caller"
"""The scope key holding who called as the connection's client certificate says
(ClientAuth.caller: `substrate:NAME`); None without client authentication."""
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, keeps no TIME_WAIT
_ACCEPTS_PER_WAKEUP = 64
DEFAULT_HEADER_TIMEOUT = 5.0
DEFAULT_BODY_TIMEOUT = 10.0


class _OneWrite:
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


@dataclass(frozen=True)
class Deadlines:
    """Seconds a connection may take for each phase before it is closed."""

    header: float = DEFAULT_HEADER_TIMEOUT
    """For the request line and headers (and the TLS handshake), from the connection's start or
    the request's first byte."""
    body: float = DEFAULT_BODY_TIMEOUT
    """For the body, from the end of the headers."""


class _Slot:
    """One accepted connection as the budget sees it: how recently it sent anything, whether a
    whole request of it is being answered, how to close it."""

    __slots__ = ("gate", "handshake", "protocol", "released")

    def __init__(self, gate: GatedServer) -> None:
        self.gate = gate
        self.handshake: asyncio.Task[None] | None = None
        self.protocol: _BudgetedProtocol | None = None
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


class _BudgetedProtocol(HttpToolsProtocol):
    """uvicorn's protocol with a deadline for each phase of a request (`deadlines`), telling its
    slot in the budget when the client sent something and whether a whole request is being
    answered."""

    deadlines = Deadlines()
    client_auth: ClientAuth | None = None
    caller: str | None = None  # as the client certificate names it (with client_auth)
    slot: _Slot | None = None  # set by the accept gate
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
        if self.cycle is not None and not isinstance(self.cycle.transport, _OneWrite):
            self.cycle.transport = _OneWrite(self.cycle.transport)  # type: ignore[assignment]

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
    return type("BudgetedProtocol", (_BudgetedProtocol,), attrs)


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
        self.quiet: OrderedDict[_Slot, None] = OrderedDict()
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
            slot = _Slot(self)
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

    async def _serve(self, conn: socket.socket, slot: _Slot) -> None:
        def protocol() -> asyncio.Protocol:
            made = self.factory()
            if isinstance(made, _BudgetedProtocol):
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


def switching_context(certificate: ServingCertificate) -> ssl.SSLContext:
    """A server context whose handshakes continue on `certificate`'s current context.

    OpenSSL runs the SNI callback on every ClientHello, with or without a server name (clients
    connecting to an IP send none), before it picks the certificate; so each new connection gets
    the pair current at that moment, and open connections keep the one they started with."""
    switching = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    switching.minimum_version = ssl.TLSVersion.TLSv1_2
    switching.load_cert_chain(certificate.cert_file, certificate.key_file)
    if certificate.client_auth is not None:
        # A connection keeps the verify mode of the context it began with (switching the context
        # does not change it), and verifies against the trust store of the context switched to:
        # both ask for client certificates, and a reloaded CA applies to new connections.
        require_client_certificate(switching, certificate.client_auth.ca_file.read_bytes())

    def to_current(connection: Any, server_name: str | None, _: ssl.SSLContext) -> None:
        connection.context = certificate.context

    switching.sni_callback = to_current
    return switching


def listening_socket(
    host: str, port: int, *, reuse_port: bool = False, option: str = "--listen"
) -> socket.socket:
    """Bound (not yet listening) for uvicorn. `reuse_port`: other processes bind the same port and
    the kernel spreads new connections over them. A port that cannot be bound (taken, not an
    address of this host, privileged) is a ListenError naming `option` and the address."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        # Inherited by accepted connections (uvloop sets it on each too): a response is headers
        # then body, and with Nagle the body waited ~40 ms for the client's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ListenError(f"{option} {address}: cannot listen there: {exc.strerror or exc}") from exc
    except BaseException:
        sock.close()
        raise
    return sock

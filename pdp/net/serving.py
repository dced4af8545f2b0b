"""uvicorn as the server of the enforcement points: its protocol with a read deadline, its loop with
a TLS handshake deadline and a connection cap applied at accept, the listening socket, and a
certificate that can change under it.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) but not a client that has
started a request and stopped sending (slowloris), nor a TLS handshake that never finishes
(asyncio's default is 60 s). Both hold a connection, and connections count against the cap, so
both get the server's read timeout here.

uvicorn's own `limit_concurrency` answers 503 only after the TLS handshake, and under overload
the handshakes of new connections are what the loop spends its time on. So connections beyond
`max_connections` (handshaking or open) are reset at accept, before any TLS work: the client
sees a refused call at once (the API server fails the call, with `failurePolicy: Fail` a
rejection), and the connections already open keep being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import time
from collections.abc import Callable
from typing import Any, cast

import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pdp.net.listen import ListenError
from pdp.net.servingcert import ServingCertificate

log = logging.getLogger(__name__)
ARRIVED = "gpupaas.arrived"
"""The scope key holding when the request's first byte was parsed (time.monotonic())."""
QUEUED = "gpupaas.queued"
"""The scope key holding how many requests of the server were unanswered when its headers were
parsed: the queue it joins when routes run on the event loop."""
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, keeps no TIME_WAIT
_ACCEPTS_PER_WAKEUP = 64


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


class _ReadDeadlineProtocol(HttpToolsProtocol):
    """Closes a connection whose request is not fully received `read_timeout` seconds after the
    connection opened or the request began."""

    read_timeout: float = 10.0
    _read_timer: asyncio.TimerHandle | None = None
    released: Callable[[], None] | None = None  # set by the accept gate: called once when lost

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        cast("dict[str, Any]", self.scope)[ARRIVED] = time.monotonic()
        self._arm()

    def on_headers_complete(self) -> None:
        cast("dict[str, Any]", self.scope)[QUEUED] = len(self.tasks)
        super().on_headers_complete()
        if self.cycle is not None and not isinstance(self.cycle.transport, _OneWrite):
            self.cycle.transport = _OneWrite(self.cycle.transport)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.released is not None:
            self.released()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(self.read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def protocol_class(read_timeout: float) -> type[asyncio.Protocol]:
    return type("ReadDeadlineProtocol", (_ReadDeadlineProtocol,), {"read_timeout": read_timeout})


class GatedServer:
    """Serves connections accepted from `sock` while fewer than `cap` are handshaking or open;
    resets the others at accept. What uvicorn needs of an asyncio Server: close, wait_closed."""

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
            if self.open >= self.cap:
                self.refused += 1
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                conn.close()
                continue
            self.open += 1
            conn.setblocking(False)
            task = self.loop.create_task(self._serve(conn))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _serve(self, conn: socket.socket) -> None:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.open -= 1

        def protocol() -> asyncio.Protocol:
            made = self.factory()
            made.released = release  # type: ignore[attr-defined]
            return made

        timeout = self.handshake_timeout if self.ssl_context is not None else None
        try:
            await self.loop.connect_accepted_socket(
                protocol, conn, ssl=self.ssl_context, ssl_handshake_timeout=timeout
            )
        except BaseException:
            # A failed or timed-out handshake never reaches the protocol's connection_lost.
            release()
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
    server's connections capped at accept (GatedServer)."""

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

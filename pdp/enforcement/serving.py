"""uvicorn as the server of the enforcement points: its protocol with a read deadline, its loop with
a TLS handshake deadline, the listening socket, and a certificate that can change under it.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) but not a client that has
started a request and stopped sending (slowloris), nor a TLS handshake that never finishes
(asyncio's default is 60 s). Both hold a connection, and connections count against
`limit_concurrency`, so both get the server's read timeout here.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from pdp.enforcement.servingcert import ServingCertificate


class _ReadDeadlineProtocol(HttpToolsProtocol):
    """Closes a connection whose request is not fully received `read_timeout` seconds after the
    connection opened or the request began."""

    read_timeout: float = 10.0
    _read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
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


def loop_factory(handshake_timeout: float) -> type[asyncio.AbstractEventLoop]:
    """uvloop, with TLS handshakes bounded (uvicorn does not pass `ssl_handshake_timeout`)."""

    class Loop(uvloop.Loop):
        async def create_server(self, *args: Any, **kwargs: Any) -> Any:
            if kwargs.get("ssl") is not None:
                kwargs.setdefault("ssl_handshake_timeout", handshake_timeout)
            return await super().create_server(*args, **kwargs)

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


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """Bound (not yet listening) for uvicorn. `reuse_port`: other processes bind the same port and
    the kernel spreads new connections over them."""
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
    except BaseException:
        sock.close()
        raise
    return sock

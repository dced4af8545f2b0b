"""Granian's embedded server running the JSON front's app on a background thread, accepting from
the socket the project bound, over TLS with a certificate that can change (granian/)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import uvloop
from granian._granian import SocketHolder
from granian.constants import HTTPModes, Interfaces, SSLProtocols
from granian.http import HTTP1Settings, HTTP2Settings
from granian.log import LogLevels
from granian.server.embed import Server

from pdp.net.granian.rsgi import RsgiJsonApp
from pdp.net.jsonhttp.app import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_WAIT,
    DEFAULT_THREADS,
    JsonApp,
)
from pdp.net.jsonhttp.routes import Route
from pdp.net.listen import bound_url
from pdp.net.serving.listening import listening_socket
from pdp.net.serving.protocol import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT
from pdp.net.servingcert import ServingCertificate

log = logging.getLogger(__name__)

HTTP_MODES = ("auto", "1", "2")
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_KEEP_ALIVE = 5
VERIFIED_CALLER = "substrate:(a client certificate of the client CA)"
"""Who called, as the decision log records it, when the handshake verified a client certificate:
Granian does not show the certificate to the app, so its names are not known here."""
_LAG_TICK = 0.01
_BACKLOG = 2048


class NamesNotCheckable(ValueError):
    """Client names were asked of the Granian front, which cannot see the client's certificate."""


class _OnOurSocket(Server):
    """Granian's embedded server, its workers accepting from our listening socket: each worker gets
    its own descriptor of it (a worker closes its descriptor when it stops), so a worker started for
    a new certificate takes over the same accept queue and nothing queued is lost when the old one
    stops."""

    listening: socket.socket

    def _init_shared_socket(self) -> None:
        self.lend_socket()

    def lend_socket(self) -> None:
        self._ssp = None
        self._shd = SocketHolder(os.dup(self.listening.fileno()), False, _BACKLOG)  # type: ignore[call-arg,assignment]


class GranianJsonServer:
    """Serves `routes` (POST, JSON) plus GET /healthz as JsonHttpServer does (the same app, limits
    and answers), with Granian: HTTP/1.1 and HTTP/2 by ALPN over TLS (`http`: "auto", or only
    "1" or "2"). With the certificate's `client_auth` the handshake requires a client certificate
    its CA signed (rustls, for the TLS client purpose); names cannot be checked (NamesNotCheckable).

    Beyond `max_pending` requests in progress, or when the event loop runs more than `max_wait`
    seconds late, a POST is answered 503 with `Retry-After: 1` and a JSON reason before its body is
    read. At most `max_connections` connections are served (HTTP/2: as many streams each), the
    others wait in the accept queue.

    A rotated pair (or client CA) is served by a new Granian worker on the same socket: the old one
    stops accepting at once and finishes the requests it has."""

    def __init__(
        self,
        routes: Mapping[str, Route],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ServingCertificate | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        keep_alive: int = DEFAULT_KEEP_ALIVE,
        max_pending: int = DEFAULT_MAX_PENDING,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        threads: int = DEFAULT_THREADS,
        reuse_port: bool = False,
        name: str = "gpupaas-http",
        inline: bool = False,
        max_wait: float = DEFAULT_MAX_WAIT,
        listen_option: str = "--listen",
        http: str = "auto",
    ) -> None:
        if http not in HTTP_MODES:
            raise ValueError(f"http {http!r} is not one of {', '.join(HTTP_MODES)}")
        auth = ssl_context.client_auth if ssl_context is not None else None
        if auth is not None and auth.names:
            raise NamesNotCheckable(
                "the Granian front cannot check the client certificate's names: serve it with uvicorn"
            )
        self.certificate = ssl_context
        self.app = JsonApp(
            routes,
            max_body=max_body,
            max_pending=max_pending,
            threads=threads,
            name=name,
            inline=inline,
            max_wait=max_wait,
        )
        self.lag = 0.0
        self.rsgi = RsgiJsonApp(
            self.app,
            body_timeout=body_timeout,
            lag=lambda: self.lag,
            caller=VERIFIED_CALLER if auth is not None else None,
        )
        self._socket = listening_socket(host, port, reuse_port=reuse_port, option=listen_option)
        self._socket.listen(_BACKLOG)
        self.reloads = 0
        self._settings: dict[str, Any] = {
            "http": HTTPModes(http),
            "backpressure": max_connections,
            "backlog": _BACKLOG,
            "http1_settings": HTTP1Settings(header_read_timeout=int(header_timeout * 1000), keep_alive=True),
            "http2_settings": HTTP2Settings(
                max_concurrent_streams=max_connections, keep_alive_interval=keep_alive * 1000
            ),
        }
        self._server: _OnOurSocket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._meter: asyncio.TimerHandle | None = None
        self._pem_dir: Path | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        return bound_url(self._socket, tls=self.certificate is not None)

    def _tls(self) -> dict[str, Any]:
        """Granian's TLS options: a private copy of the files ServingCertificate validated last, so
        that a half-written Secret is never what a worker reads."""
        if self.certificate is None:
            return {}
        if self._pem_dir is None:
            self._pem_dir = Path(tempfile.mkdtemp(prefix="gpupaas-tls-"))  # 0700
        files = []
        for part, pem in zip(("cert", "key", "ca"), self.certificate.pem(), strict=False):
            path = self._pem_dir / f"{part}-{self.reloads}.pem"
            path.touch(mode=0o600)
            path.write_bytes(pem)
            files.append(path)
        verify = len(files) == 3
        return {
            "ssl_cert": files[0],
            "ssl_key": files[1],
            "ssl_protocol_min": SSLProtocols.tls12,
            "ssl_ca": files[2] if verify else None,
            "ssl_client_verify": verify,
        }

    def _build(self) -> _OnOurSocket:
        server = _OnOurSocket(
            self.rsgi,
            address=str(self._socket.getsockname()[0]),
            port=self.port,
            interface=Interfaces.RSGI,
            runtime_threads=1,
            websockets=False,
            log_level=LogLevels.error,
            **self._settings,
            **self._tls(),
        )
        # A rotated pair: the new worker starts, then the old one stops accepting at once (it
        # finishes the requests it has); by default both would accept for 3.5 s.
        server.respawn_interval = 0
        server.listening = self._socket
        return server

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(self._serve())
        except BaseException as exc:  # reported by start(); a thread's exception is otherwise lost
            self._error = exc
        finally:
            self._started.set()

    def _measure_lag(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        """How late the loop ran this timer, due at `due`; then the next one. A plain timer
        callback, not a task sleeping: 100 a second, each `asyncio.sleep` cost a future, a timer
        and a step of the task (about 10 ms of CPU a second on an idle server)."""
        now = loop.time()
        self.lag = max(0.0, now - due)
        self._meter = loop.call_at(now + _LAG_TICK, self._measure_lag, loop, now + _LAG_TICK)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = self._build()
        due = self._loop.time() + _LAG_TICK
        self._meter = self._loop.call_at(due, self._measure_lag, self._loop, due)
        self._loop.call_soon(self._started.set)
        try:
            await self._server.serve()
        finally:
            if self._meter is not None:
                self._meter.cancel()

    def start(self, timeout: float = 10.0) -> None:
        """Returns once Granian's worker serves the port (the socket accepts from the start)."""
        if self.certificate is not None:
            self.certificate.on_change = self.reload
            self.certificate.start()
        self._thread.start()
        if not self._started.wait(timeout) or self._error is not None:
            raise RuntimeError(f"the HTTP server did not start: {self._error!r}")
        deadline = time.monotonic() + timeout
        while not (self._server is not None and self._server.wrks):
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the HTTP server did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server did not start within {timeout} s")
            time.sleep(0.01)

    def reload(self) -> None:
        """Serve new connections with the pair ServingCertificate holds now (any thread)."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing to serve
                self._loop.call_soon_threadsafe(self._reload)

    def _reload(self) -> None:
        if self._server is None or self.certificate is None:
            return
        self.reloads += 1
        tls = self._tls()
        self._server.build_ssl_context(
            tls["ssl_cert"],
            tls["ssl_key"],
            None,
            tls["ssl_protocol_min"],
            tls["ssl_ca"],
            [],
            tls["ssl_client_verify"],
        )
        self._server.lend_socket()
        self._server.reload()  # type: ignore[no-untyped-call]

    def stop(self, timeout: float = 15.0) -> None:
        """Stop accepting, let the requests in progress finish."""
        if self.certificate is not None:
            self.certificate.on_change = None
            self.certificate.stop()
        if self._loop is not None and self._server is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._server.stop)
        self._thread.join(timeout=timeout)
        with contextlib.suppress(OSError):
            self._socket.close()
        self.app.pool.shutdown(wait=False, cancel_futures=True)
        if self._pem_dir is not None:
            shutil.rmtree(self._pem_dir, ignore_errors=True)

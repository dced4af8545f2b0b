"""uvicorn serving the JSON front's app on a background thread, through the decision fronts'
serving layer (pdp/net/serving/), over TLS with a certificate that can change (jsonhttp/)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Mapping
from typing import Any, cast

import uvicorn

from pdp.net.jsonhttp.app import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_WAIT,
    DEFAULT_THREADS,
    JsonApp,
)
from pdp.net.jsonhttp.routes import Route
from pdp.net.listen import bound_url
from pdp.net.serving.gate import GatedServer
from pdp.net.serving.listening import listening_socket
from pdp.net.serving.loop import loop_factory
from pdp.net.serving.protocol import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, Deadlines, protocol_class
from pdp.net.serving.tls import switching_context
from pdp.net.servingcert import ServingCertificate

DEFAULT_KEEP_ALIVE = 5
DEFAULT_MAX_CONNECTIONS = 128
DEFAULT_GRACEFUL_SHUTDOWN = 5


class JsonHttpServer:
    """Serves `routes` (POST, JSON) plus GET /healthz on a background thread; over TLS with a
    ServingCertificate, whose files are watched while the server runs, answering only the clients
    its `client_auth` admits when it has one (clientauth.py).

    `reuse_port`: other processes may serve the same port (`--webhook-workers`)."""

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
        graceful_shutdown: int = DEFAULT_GRACEFUL_SHUTDOWN,
        reuse_port: bool = False,
        name: str = "gpupaas-http",
        inline: bool = False,
        max_wait: float = DEFAULT_MAX_WAIT,
        listen_option: str = "--listen",
    ) -> None:
        """`inline`: run the routes on the event loop (only for routes that never wait on I/O).
        `listen_option`: the command-line option that gave host and port, named when they
        cannot be bound."""
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
        self._socket = listening_socket(host, port, reuse_port=reuse_port, option=listen_option)
        certificate = self.certificate
        config = uvicorn.Config(
            self.app,
            host=host,
            port=self.port,
            http=protocol_class(
                Deadlines(header=header_timeout, body=body_timeout),
                certificate.client_auth if certificate is not None else None,
            ),
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            limit_concurrency=2 * max_connections,  # a backstop: the accept gate keeps the budget
            timeout_keep_alive=keep_alive,
            timeout_graceful_shutdown=graceful_shutdown,
            ssl_context_factory=(lambda *_: switching_context(certificate)) if certificate else None,
        )
        self._server = uvicorn.Server(config)
        self._loop_factory = loop_factory(header_timeout, max_connections)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=self._loop_factory) as runner:
                runner.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # reported by start(); a thread's exception is otherwise lost
            self._error = exc

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        return bound_url(self._socket, tls=self.certificate is not None)

    @property
    def gate(self) -> GatedServer:
        """The accept gate keeping the connection budget (once started)."""
        return cast("GatedServer", self._server.servers[0])

    def open_sockets(self) -> list[Any]:
        """The sockets of the connections open now (to check their options)."""
        connections = list(self._server.server_state.connections)
        return [c.transport.get_extra_info("socket") for c in connections if c.transport is not None]

    def start(self, timeout: float = 10.0) -> None:
        if self.certificate is not None:
            self.certificate.start()
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the HTTP server did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server did not start within {timeout} s")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop accepting, end idle keep-alive connections, let requests being decided finish
        (for at most `graceful_shutdown` seconds)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=(self._server.config.timeout_graceful_shutdown or 0) + 10)
        with contextlib.suppress(OSError):
            self._socket.close()
        self.app.pool.shutdown(wait=False, cancel_futures=True)
        if self.certificate is not None:
            self.certificate.stop()

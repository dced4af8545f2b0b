"""Serves the HTTP decision API (pdp/api/http.py) with uvicorn on a background thread.

TLS lives in the server: with a certificate and key, every handshake takes the context current
at that moment from a ServingCertificate (the same watcher as the webhook's), so a rotated pair
serves new connections without a restart. The switch happens in the SNI callback, which OpenSSL
runs on every ClientHello, with or without a server name (clients connecting to an IP send none).

On a unix socket (`unix_socket`, pdp/net/listen.py's bind_unix_socket) the file's permissions
say who may ask, and its folder, writable by this user only, that nobody else can answer in the
server's place while it is down (the Slurm hook's channel, docs/slurm.md).

Served by the decision fronts' serving layer (pdp/net/serving/), so connections that send
nothing or half a request cannot take it down (issue 28: ~256 of them turned every decision into a
503, and the Slurm hook refused every GPU job): a client gets `header_timeout` seconds for the TLS
handshake, request line and headers, `body_timeout` for the body and `keep_alive` idle between
requests; at most `max_connections` are open, one more evicting the quietest connection not being
answered, and is reset at accept only when all are being answered. Nothing slow holds a thread:
requests are read on the event loop and reach a worker thread whole. Shutdown drains in-flight
requests for at most `graceful_shutdown` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self, cast

import uvicorn

from pdp.api.auth import require_credentials
from pdp.api.http import DEFAULT_MAX_BODY, DecisionApi
from pdp.api.token_file import BearerTokens
from pdp.net.listen import UNIX_PREFIX, bind_unix_socket, bound_url
from pdp.net.serving.gate import GatedServer
from pdp.net.serving.loop import loop_factory
from pdp.net.serving.protocol import DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, Deadlines, protocol_class
from pdp.net.serving.tls import switching_context
from pdp.net.servingcert import DEFAULT_POLL_INTERVAL, ServingCertificate
from pdp.point import DecisionPoint

DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_KEEP_ALIVE = 5


class HttpDecisionServer:
    def __init__(
        self,
        point: DecisionPoint,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unix_socket: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        tokens: BearerTokens | None = None,
        default_timeout: float = 1.0,
        engine_ready: Callable[[], bool] = lambda: True,
        max_body: int = DEFAULT_MAX_BODY,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        keep_alive: int = DEFAULT_KEEP_ALIVE,
        graceful_shutdown: int = 5,
        cert_poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if bool(cert_file) != bool(key_file):
            raise ValueError("give both a certificate and a key, or neither")
        if unix_socket is None:
            require_credentials(f"--http-listen {host}:{port}", host, tokens, "--http-token-file")
        self.api = DecisionApi(
            point,
            tokens=tokens,
            default_timeout=default_timeout,
            max_body=max_body,
            engine_ready=engine_ready,
        )
        self.certificate = (
            ServingCertificate(cert_file, key_file, poll_interval=cert_poll_interval)
            if cert_file and key_file
            else None
        )
        self.unix_socket = unix_socket
        if unix_socket is not None:
            self._socket = bind_unix_socket(unix_socket)
            self._socket_inode = unix_socket.stat().st_ino
        else:
            family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
            self._socket = socket.socket(family, socket.SOCK_STREAM)
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Inherited by every accepted connection. Without it a keep-alive answer (headers, then
            # body, two writes) waited for the client's delayed ACK: 44 ms per decision instead of 2.
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._socket.bind((host.strip("[]"), port))
        certificate = self.certificate
        config = uvicorn.Config(
            self.api.app(),
            host=host,
            port=0 if unix_socket else self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http=protocol_class(Deadlines(header=header_timeout, body=body_timeout)),
            limit_concurrency=2 * max_connections,  # a backstop: the accept gate keeps the budget
            timeout_keep_alive=keep_alive,
            timeout_graceful_shutdown=graceful_shutdown,
            ssl_context_factory=(lambda *_: switching_context(certificate)) if certificate else None,
        )
        self._server = uvicorn.Server(config)
        self._loop_factory = loop_factory(header_timeout, max_connections)
        # uvicorn installs SIGINT/SIGTERM handlers only in the main thread; the CLI owns those.
        self._thread = threading.Thread(target=self._run, name="pdp-http", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=self._loop_factory) as runner:
                runner.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # reported by start(); a thread's exception is otherwise lost
            self._error = exc

    @property
    def port(self) -> int:
        if self.unix_socket is not None:
            raise ValueError(f"the HTTP decision API listens on unix:{self.unix_socket}, not a port")
        return int(self._socket.getsockname()[1])

    @property
    def gate(self) -> GatedServer:
        """The accept gate keeping the connection budget (once started)."""
        return cast("GatedServer", self._server.servers[0])

    @property
    def url(self) -> str:
        """http(s)://HOST:PORT, or unix:PATH for a unix socket."""
        if self.unix_socket is not None:
            return f"{UNIX_PREFIX}{self.unix_socket}"
        return bound_url(self._socket, tls=self.certificate is not None)

    def start(self, timeout: float = 10.0) -> Self:
        if self.certificate is not None:
            self.certificate.start()
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the HTTP decision API did not start: {self._error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP decision API did not start within {timeout} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)
        with contextlib.suppress(OSError):
            self._socket.close()
        # Our file only: a server started since on the same path keeps its own.
        if self.unix_socket is not None:
            with contextlib.suppress(OSError):
                if self.unix_socket.stat().st_ino == self._socket_inode:
                    self.unix_socket.unlink()
        if self.certificate is not None:
            self.certificate.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""One keep-alive HTTP/1.1 connection to OPA over TCP or a unix socket, for the sidecar engine.

http.client cost about 175 us of the PDP's CPU per OPA call, most of it outside the socket: the
request written in two sends (head, then body), the status line and headers read line by line
and parsed by the `email` package (docs/performance.md). Here a request is one prebuilt head and
the body in a single send, and the answer is parsed by httptools (llhttp, the parser uvicorn
uses) as it arrives. TLS connections (an OPA off loopback) keep http.client.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable
from typing import Protocol

import httptools

_RECV = 65536


class Connection(Protocol):
    def exchange(self, head: bytes, body: bytes, timeout: float) -> tuple[int, bytes]:
        """Send one request (head without Content-Length and its final blank line, then body) and
        read its answer: (status, body). Raises OSError (TimeoutError when `timeout` passes),
        http.client.HTTPException for an answer that is not HTTP."""
        ...

    def close(self) -> None: ...


class _Response:
    """httptools callbacks: whether the connection stays open, the body and the end of one answer
    (llhttp tells keep-alive only until the message completes)."""

    __slots__ = ("chunks", "complete", "keep_alive", "parser")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.complete = False
        self.keep_alive = False
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def on_message_complete(self) -> None:
        self.complete = True


class WireConnection:
    """HTTP/1.1 over a connected stream socket, one request at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._open = True

    @classmethod
    def tcp(cls, host: str, port: int, timeout: float) -> WireConnection:
        sock = socket.create_connection((host, port), timeout=timeout)
        # the answer's last segment must not wait for a delayed ACK of ours
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock)

    @classmethod
    def unix(cls, path: str, timeout: float) -> WireConnection:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def exchange(self, head: bytes, body: bytes, timeout: float) -> tuple[int, bytes]:
        if not self._open:
            raise ConnectionError("the connection is closed")
        sock = self._sock
        sock.settimeout(timeout)
        sock.sendall(b"%s\r\nContent-Length: %d\r\n\r\n%s" % (head, len(body), body))
        response = _Response()
        parser = response.parser
        while not response.complete:
            data = sock.recv(_RECV)
            if not data:
                raise ConnectionError("OPA closed the connection before answering")
            try:
                parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise http.client.HTTPException(f"OPA's answer is not HTTP/1.1: {exc}") from exc
        if not response.keep_alive:
            self.close()
        return parser.get_status_code(), b"".join(response.chunks)

    def close(self) -> None:
        self._open = False
        self._sock.close()


class StdlibConnection:
    """http.client for what WireConnection does not speak (TLS)."""

    def __init__(self, conn: http.client.HTTPConnection) -> None:
        self._conn = conn

    def exchange(self, head: bytes, body: bytes, timeout: float) -> tuple[int, bytes]:
        method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
        self._conn.timeout = timeout
        if self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self._conn.request(method.decode(), target.decode(), body, headers)
        resp = self._conn.getresponse()
        return resp.status, resp.read()

    def close(self) -> None:
        self._conn.close()


Connect = Callable[[float], Connection]

"""What a server speaks when a client offers HTTP/2 and HTTP/1.1 by ALPN, as vegeta and
kube-apiserver's webhook client do: a row measured "over HTTP/2" against a server that picks
HTTP/1.1 is an HTTP/1.1 row, and the report says so."""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit


def negotiated(url: str, offered: tuple[str, ...] = ("h2", "http/1.1"), *, timeout: float = 5.0) -> str:
    """The protocol the server at `url` selects from `offered` ("http/1.1" when it selects none)."""
    parts = urlsplit(url)
    context = ssl._create_unverified_context()  # the bench's own serving certificates
    context.set_alpn_protocols(list(offered))
    raw = socket.create_connection((parts.hostname or "", parts.port or 443), timeout=timeout)
    with context.wrap_socket(raw, server_hostname=parts.hostname) as tls:
        return tls.selected_alpn_protocol() or "http/1.1"

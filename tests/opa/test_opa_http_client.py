"""OPA's HTTP clients (pdp/opa/http.py) share one TLS context: creating a client is cheap (the
health monitor creates two a second), and an https address is still verified."""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pdp.opa.http import http_client
from tests.conftest import self_signed


def test_creating_a_client_does_not_load_the_ca_bundle_again() -> None:
    http_client("127.0.0.1:1").close()  # the first one builds the shared context
    started = time.process_time()
    for _ in range(20):
        http_client("127.0.0.1:1").close()
        http_client("unix:///nonexistent.sock").close()
    # CPU time, not wall time: a loaded machine cannot fail this. Each client cost ~20 ms of
    # CPU when it built its own context (40 clients: ~800 ms).
    assert time.process_time() - started < 0.2


@pytest.fixture()
def untrusted_https(tmp_path: Path) -> Iterator[str]:
    cert, key = self_signed(tmp_path)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_https_address_with_an_untrusted_certificate_is_refused(untrusted_https: str) -> None:
    with http_client(untrusted_https, timeout=5) as client, pytest.raises(httpx.ConnectError, match="verify"):
        client.get("/health")

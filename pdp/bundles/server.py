"""A small bundle server: OPA's bundle plugin polls it for the current bundle.

It serves the files of one folder (by name only, never a path outside it) with an ETag so OPA's
conditional polls (If-None-Match) cost a 304 and no download when nothing changed.

Bundles carry every tenant's policy data, so off loopback the server speaks TLS (`tls`): OPA
verifies it against the platform CA (`services.<name>.tls.ca_cert`). The certificate files are
watched and a rotated pair serves new connections, as for the webhook (servingcert.py).
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pdp.net.servingcert import ServingCertificate

log = logging.getLogger(__name__)

# A client that connects and never finishes its handshake or request holds only its own thread,
# and only this long.
READ_TIMEOUT = 30.0


class _Handler(BaseHTTPRequestHandler):
    server: BundleHTTPServer

    def do_GET(self) -> None:
        name = urlsplit(self.path).path.lstrip("/")
        if not name or "/" in name or name.startswith("."):
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        path = self.server.directory / name
        try:
            body = path.read_bytes()
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # OPA polls every second or two; access logs would drown everything else


class BundleHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ServingCertificate | None = None,
    ) -> None:
        self.directory = directory
        self.tls = tls
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # On the connection's own thread (ThreadingMixIn): a slow handshake never blocks accepting.
        request.settimeout(READ_TIMEOUT)
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        try:
            conn = self.tls.context.wrap_socket(request, server_side=True)
        except OSError as exc:
            log.debug("TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{port}"


class BundleServer:
    """Runs a BundleHTTPServer on a background thread; over TLS with `tls`, whose files are
    watched while it runs."""

    def __init__(
        self,
        directory: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: ServingCertificate | None = None,
    ) -> None:
        self.certificate = tls
        self._httpd = BundleHTTPServer(directory, host, port, tls)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="bundle-server", daemon=True)

    @property
    def url(self) -> str:
        return self._httpd.url

    def start(self) -> BundleServer:
        if self.certificate is not None:
            self.certificate.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self.certificate is not None:
            self.certificate.stop()

    def __enter__(self) -> BundleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""A small bundle server: OPA's bundle plugin polls it for the current bundle.

It serves the files of one folder (by name only, never a path outside it) with an ETag so OPA's
conditional polls (If-None-Match) cost a 304 and no download when nothing changed.
"""

from __future__ import annotations

import hashlib
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit


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

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.directory = directory
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class BundleServer:
    """Runs a BundleHTTPServer on a background thread."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = BundleHTTPServer(directory, host, port)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="bundle-server", daemon=True)

    @property
    def url(self) -> str:
        return self._httpd.url

    def start(self) -> BundleServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> BundleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

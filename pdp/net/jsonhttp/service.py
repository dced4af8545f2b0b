"""What the webhook and the extender servers share (jsonhttp/)."""

from __future__ import annotations

from typing import Self

from pdp.net.jsonhttp.server import JsonHttpServer
from pdp.net.serving.gate import GatedServer
from pdp.net.servingcert import ServingCertificate


class HttpService:
    """What the webhook and the extender servers share: a JsonHttpServer with its address,
    start/stop, and use as a context manager. Subclasses set `_http` in their constructor."""

    _http: JsonHttpServer

    @property
    def url(self) -> str:
        return self._http.url

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def certificate(self) -> ServingCertificate | None:
        """The serving certificate and its reload status; None without TLS."""
        return self._http.certificate

    @property
    def gate(self) -> GatedServer:
        """The accept gate keeping the connection budget (once started)."""
        return self._http.gate

    def start(self) -> Self:
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

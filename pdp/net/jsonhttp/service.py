"""What the webhook and the extender servers share (jsonhttp/)."""

from __future__ import annotations

from typing import Protocol, Self

from pdp.net.jsonhttp.server import JsonHttpServer
from pdp.net.serving.gate import GatedServer
from pdp.net.servingcert import ServingCertificate


class Front(Protocol):
    """The HTTP server of a service: JsonHttpServer (uvicorn), or GranianJsonServer
    (pdp/net/granian/)."""

    certificate: ServingCertificate | None

    @property
    def url(self) -> str: ...

    @property
    def port(self) -> int: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class HttpService:
    """What the webhook and the extender servers share: a front (JsonHttpServer or
    GranianJsonServer) with its address, start/stop, and use as a context manager. Subclasses set
    `_http` in their constructor."""

    _http: Front

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
        """The accept gate keeping the connection budget (once started; uvicorn's front only)."""
        if not isinstance(self._http, JsonHttpServer):
            raise AttributeError("only the uvicorn front has an accept gate")
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

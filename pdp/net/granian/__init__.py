"""Granian (Rust: hyper, tokio, rustls) as the server of the admission webhook: HTTP/1.1 and HTTP/2
negotiated by ALPN, TLS and HTTP parsing on a Rust thread, the routes of the JSON front
(jsonhttp/JsonApp) run over RSGI on the event loop of the server's own Python thread (Granian's
embedded server).

Why HTTP/2: Go's HTTP/1.1 client (kube-apiserver's, vegeta's) dials one connection per call in
flight, so under overload its pool grows and the uvicorn front resets what is beyond its
connection budget; over HTTP/2 the client multiplexes its calls on one connection and overload is
answered per request: 503, `Retry-After: 1`, a JSON reason, before the body is read. A 503 is
never an admission (with failurePolicy Fail the API server rejects the object).

Client certificates: rustls verifies the chain against the client CA (CERT_REQUIRED, client
purpose), but Granian does not show the certificate to the app, so `--webhook-client-names`
cannot be checked here: a webhook with names is served by uvicorn (launch.py), never by a front
that would admit any client of the CA.

The modules: rsgi.py (the app over RSGI), server.py (Granian on a thread, the shared socket,
certificate rotation).
"""

from pdp.net.granian.rsgi import RsgiJsonApp
from pdp.net.granian.server import (
    HTTP_MODES,
    VERIFIED_CALLER,
    GranianJsonServer,
    NamesNotCheckable,
)

__all__ = ["HTTP_MODES", "VERIFIED_CALLER", "GranianJsonServer", "NamesNotCheckable", "RsgiJsonApp"]

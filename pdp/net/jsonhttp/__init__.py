"""The JSON-over-HTTP(S) front of the enforcement points (webhook, scheduler extender): a small
ASGI app served by uvicorn (httptools parser, uvloop event loop) on a background thread.

The API server and kube-scheduler keep connections alive and retry on their own, so the server's
job is to stay up and answer fast: every request gets an answer (411/413/404/405/400/500/503 with
a JSON message); a client that stops sending is dropped after `header_timeout` seconds for the
TLS handshake, request line and headers, or `body_timeout` for the body (serving/); idle
keep-alive connections are closed after `keep_alive` seconds.

Overload is refused, not queued: beyond `max_pending` requests being decided (queued for or
running on the decision threads, or with inline routes queued for the event loop) a request is
answered 503 at once; a request that waited more
than `max_wait` seconds for the event loop is answered 503 instead of being decided. Open
connections are kept within `max_connections`: one more evicts the quietest connection not being
answered, and is reset at accept, before the TLS handshake, only when every one is being answered
(serving/); so connections that send nothing or half a request cannot starve new ones. A 503 is
never an admission: the API server treats any webhook answer that is not an AdmissionReview as
a call failure, and with `failurePolicy: Fail` (deploy/) a failed call rejects the object;
kube-scheduler treats an extender error as a failed scheduling cycle and retries the pod.

Routes are plain functions. By default they run on a small thread pool: deciding through the OPA
sidecar is an HTTP call, and the event loop must keep accepting and parsing meanwhile. `inline`
routes run on the event loop itself: for a decision that only uses the CPU (the wasm engine) the
handoff to a thread and back (a future, a loop wake-up, two GIL switches) cost more than the
decision's own Python, and one thread deciding at a time is all one process can do anyway.

The modules: routes.py (what a route is and how its answer becomes a response), app.py (the ASGI
app: limits, overload, the routes' threads), server.py (uvicorn serving the app), service.py (what
the webhook and the extender servers share). The public names are here for their callers.
"""

from pdp.net.jsonhttp.app import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_PENDING,
    DEFAULT_MAX_WAIT,
    DEFAULT_THREADS,
    JsonApp,
)
from pdp.net.jsonhttp.routes import HttpError, Query, Route
from pdp.net.jsonhttp.server import (
    DEFAULT_GRACEFUL_SHUTDOWN,
    DEFAULT_KEEP_ALIVE,
    DEFAULT_MAX_CONNECTIONS,
    JsonHttpServer,
)
from pdp.net.jsonhttp.service import HttpService

__all__ = [
    "DEFAULT_GRACEFUL_SHUTDOWN",
    "DEFAULT_KEEP_ALIVE",
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_MAX_WAIT",
    "DEFAULT_THREADS",
    "HttpError",
    "HttpService",
    "JsonApp",
    "JsonHttpServer",
    "Query",
    "Route",
]

"""The gRPC server: DecisionService plus standard health and reflection, so grpcurl and
grpc-health-probe work against it.

Health follows the engine: SERVING only while the engine has an active bundle, so load balancers
and probes route around a PDP that could only answer DENY (engine unavailable). Two more service
names answer for what that does not cover:

- `gpupaas.pdp.v1.Liveness`: SERVING while this process answers at all (a liveness probe must not
  restart the PDP because its engine is down: that is readiness).
- `gpupaas.pdp.v1.Bundle`: NOT_SERVING while OPA refuses the bundle it was last offered (bad
  signature, digest mismatch, compile error). The PDP keeps deciding on the last good revision and
  stays SERVING under "" and DecisionService: that revision was verified, and a refused download
  must not turn into every decision being DENY. The refusal is logged at WARNING with OPA's
  message, once per distinct message, and is `PdpServer.bundle_refusal`.

Held connections (issue 28): gRPC's C core serves connections on its own pollers, not on the
worker threads, so 1,000 connections that send nothing, or open HTTP/2 and never a stream, cost
descriptors and memory but no thread, and new connections are served meanwhile
(tests/net/test_connection_exhaustion.py). `connection_options` bounds how long they are kept:
one that has not finished its handshake (TLS, HTTP/2 preface and SETTINGS) within
`handshake_timeout` is closed (gRPC's default is 120 s), one with no RPC for `max_connection_idle`
is sent GOAWAY (clients reconnect on their next call; gRPC's default keeps it forever), and a peer
that stops answering the server's keepalive pings is dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pdp import metrics
from pdp._proto.gpupaas.pdp.v1 import pdp_pb2
from pdp.api.auth import require_credentials
from pdp.api.servicer import DecisionServicer, add_to_server
from pdp.api.token_file import BearerTokens
from pdp.point import DecisionPoint

SERVICE_NAME = pdp_pb2.DESCRIPTOR.services_by_name["DecisionService"].full_name
LIVENESS_SERVICE = "gpupaas.pdp.v1.Liveness"
BUNDLE_SERVICE = "gpupaas.pdp.v1.Bundle"

log = logging.getLogger(__name__)
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
DEFAULT_MAX_CONNECTION_IDLE = 60.0
_KEEPALIVE_TIME_MS = 60_000  # ping a connection quiet this long, to find peers that are gone
_KEEPALIVE_TIMEOUT_MS = 20_000  # and drop it if the ping is not answered within this
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class EngineHealthMonitor:
    """Polls `probe` (True when the engine can decide) and, if given, `bundle_refusal` (why the
    engine refused its last bundle, or None), and mirrors them into gRPC health."""

    def __init__(
        self,
        servicer: health.HealthServicer,
        probe: Callable[[], bool],
        interval: float = 1.0,
        bundle_refusal: Callable[[], str | None] | None = None,
    ) -> None:
        self._servicer = servicer
        self._probe = probe
        self._bundle_refusal = bundle_refusal
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-health", daemon=True)
        self.refusal: str | None = None

    def _check(self) -> None:
        try:
            ready = self._probe()
        except Exception:
            ready = False
        refusal = None
        if self._bundle_refusal is not None:
            try:
                refusal = self._bundle_refusal()
            except Exception as exc:
                refusal = f"the engine's bundle status could not be read: {exc}"
        if refusal != self.refusal:
            if refusal is not None:
                metrics.bundle_refused()
                log.warning(
                    "the policy engine refused the latest bundle (%s); decisions continue on the "
                    "last good revision",
                    refusal,
                )
            else:
                log.info("the policy engine activated the latest bundle; no refusal outstanding")
            self.refusal = refusal
        for name in ("", SERVICE_NAME):
            self._servicer.set(name, _SERVING if ready else _NOT_SERVING)
        self._servicer.set(BUNDLE_SERVICE, _SERVING if ready and refusal is None else _NOT_SERVING)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._check()

    def start(self) -> None:
        self._servicer.set(LIVENESS_SERVICE, _SERVING)
        self._check()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def connection_options(
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    max_connection_idle: float = DEFAULT_MAX_CONNECTION_IDLE,
) -> list[tuple[str, int]]:
    """The gRPC server's channel arguments bounding how long a connection is kept (module doc)."""
    return [
        ("grpc.server_handshake_timeout_ms", int(handshake_timeout * 1000)),
        ("grpc.max_connection_idle_ms", int(max_connection_idle * 1000)),
        ("grpc.keepalive_time_ms", _KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
    ]


class PdpServer:
    def __init__(
        self,
        point: DecisionPoint,
        *,
        listen: str = "127.0.0.1:50051",
        engine_ready: Callable[[], bool] = lambda: True,
        bundle_refusal: Callable[[], str | None] | None = None,
        max_workers: int = 16,
        default_timeout: float = 1.0,
        tls: tuple[bytes, bytes] | None = None,
        health_listen: str | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        max_connection_idle: float = DEFAULT_MAX_CONNECTION_IDLE,
        tokens: BearerTokens | None = None,
    ) -> None:
        """`tls`: (certificate chain PEM, private key PEM). Without it the server listens in
        plaintext, which the CLI only allows on loopback. `bundle_refusal`: why the engine refused
        its latest bundle, or None (pdp.opa.status.bundle_refusal for an OPA). `health_listen`: also
        serve the health service alone, in plaintext, on this address: the kubelet's gRPC probes
        speak plaintext only (TLS needs the alpha GRPCContainerProbeTLS gate), and that port
        carries no decisions, no intents and no credentials. `handshake_timeout`,
        `max_connection_idle`: seconds, for both listeners (module doc). `tokens`: the bearer tokens
        callers authenticate with (pdp/api/auth.py); without them only loopback or a unix socket is
        served, to `local` callers."""
        if not listen.startswith("unix:"):
            require_credentials(f"--listen {listen}", listen.rsplit(":", 1)[0], tokens, "--token-file")
        options = connection_options(handshake_timeout, max_connection_idle)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="pdp-grpc"),
            options=options,
        )
        add_to_server(DecisionServicer(point, default_timeout=default_timeout, tokens=tokens), self._server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        if tls is not None:
            credentials = grpc.ssl_server_credentials([(tls[1], tls[0])])
            self.port = self._server.add_secure_port(listen, credentials)
        else:
            self.port = self._server.add_insecure_port(listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {listen}")
        host = listen.rsplit(":", 1)[0]
        self.address = f"{host}:{self.port}"
        self._health_server: grpc.Server | None = None
        self.health_address: str | None = None
        if health_listen is not None:
            self._health_server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="pdp-health"), options=options
            )
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self._health_server)
            health_port = self._health_server.add_insecure_port(health_listen)
            if health_port == 0:
                raise OSError(f"cannot listen on {health_listen}")
            self.health_address = f"{health_listen.rsplit(':', 1)[0]}:{health_port}"
        self._monitor = EngineHealthMonitor(self.health, engine_ready, bundle_refusal=bundle_refusal)

    @property
    def bundle_refusal(self) -> str | None:
        """Why the engine refused its latest bundle, as of the last health check; None if it did not."""
        return self._monitor.refusal

    def start(self) -> PdpServer:
        self._monitor.start()
        self._server.start()
        if self._health_server is not None:
            self._health_server.start()
        return self

    def wait(self) -> None:
        self._server.wait_for_termination()

    def stop(self, grace: float = 2.0) -> None:
        self._monitor.stop()
        if self._health_server is not None:
            self._health_server.stop(0)
        self._server.stop(grace).wait()

"""The gRPC server: DecisionService plus standard health and reflection, so grpcurl and
grpc-health-probe work against it.

Health follows the engine: SERVING only while the engine has an active bundle, so load balancers
and probes route around a PDP that could only answer DENY (engine unavailable).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pdp._proto.gpupaas.pdp.v1 import pdp_pb2, pdp_pb2_grpc
from pdp.api.servicer import DecisionServicer
from pdp.point import DecisionPoint

SERVICE_NAME = pdp_pb2.DESCRIPTOR.services_by_name["DecisionService"].full_name


class EngineHealthMonitor:
    """Polls `probe` (True when the engine can decide) and mirrors it into gRPC health."""

    def __init__(
        self, servicer: health.HealthServicer, probe: Callable[[], bool], interval: float = 1.0
    ) -> None:
        self._servicer = servicer
        self._probe = probe
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-health", daemon=True)

    def _set(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", SERVICE_NAME):
            self._servicer.set(name, status)

    def _run(self) -> None:
        while True:
            try:
                ok = self._probe()
            except Exception:
                ok = False
            self._set(ok)
            if self._stop.wait(self._interval):
                return

    def start(self) -> None:
        self._set(self._probe())
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class PdpServer:
    def __init__(
        self,
        point: DecisionPoint,
        *,
        listen: str = "127.0.0.1:50051",
        engine_ready: Callable[[], bool] = lambda: True,
        max_workers: int = 16,
        default_timeout: float = 1.0,
        tls: tuple[bytes, bytes] | None = None,
    ) -> None:
        """`tls`: (certificate chain PEM, private key PEM). Without it the server listens in
        plaintext, which the CLI only allows on loopback."""
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="pdp-grpc")
        )
        pdp_pb2_grpc.add_DecisionServiceServicer_to_server(
            DecisionServicer(point, default_timeout=default_timeout), self._server
        )
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
        self._monitor = EngineHealthMonitor(self.health, engine_ready)

    def start(self) -> PdpServer:
        self._server.start()
        self._monitor.start()
        return self

    def wait(self) -> None:
        self._server.wait_for_termination()

    def stop(self, grace: float = 2.0) -> None:
        self._monitor.stop()
        self._server.stop(grace).wait()

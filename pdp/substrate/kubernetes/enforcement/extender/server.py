"""The scheduler extender served over HTTP(S): kube-scheduler's filter, prioritize and preempt
calls, answered by a `SchedulerExtender`."""

from __future__ import annotations

from pathlib import Path

from pdp.net.clientauth import ClientAuth
from pdp.net.jsonhttp import HttpService, JsonHttpServer
from pdp.net.limits import DEFAULT_LIMITS, ServingLimits
from pdp.net.servingcert import DEFAULT_POLL_INTERVAL, ServingCertificate
from pdp.substrate.kubernetes.enforcement.extender.scheduler_extender import SchedulerExtender


class ExtenderServer(HttpService):
    """HTTP (HTTPS with a certificate, reloaded like the webhook's) for kube-scheduler's extender
    calls; with `client_auth` (HTTPS only) answering only kube-scheduler's client certificate (its
    extender `tlsConfig.certFile`)."""

    def __init__(
        self,
        extender: SchedulerExtender,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        max_body: int = 64 * 1024 * 1024,
        cert_poll_interval: float = DEFAULT_POLL_INTERVAL,
        inline: bool | None = None,
        client_auth: ClientAuth | None = None,
        limits: ServingLimits = DEFAULT_LIMITS,
    ) -> None:
        """`inline`: answer on the event loop rather than on a thread; by default when deciding
        only uses the CPU (the wasm engine, no durable record), as the webhook does."""
        self.extender = extender
        if client_auth is not None and not (cert_file and key_file):
            raise ValueError("client certificates need TLS: give the extender a certificate and key")
        tls = (
            ServingCertificate(cert_file, key_file, poll_interval=cert_poll_interval, client_auth=client_auth)
            if cert_file and key_file
            else None
        )
        self._http = JsonHttpServer(
            {
                "/filter": lambda body, _q, _t, caller: extender.filter_json(body, caller),
                "/prioritize": lambda body, _q, _t, caller: extender.prioritize_json(body, caller),
                "/preempt": lambda body, _q, _t, caller: extender.preempt_json(body, caller),
            },
            host=host,
            port=port,
            ssl_context=tls,
            max_body=max_body,
            name="gpupaas-extender",
            listen_option="--extender-listen",
            inline=not extender.point.waits_on_io if inline is None else inline,
            **limits.server_options(),
        )

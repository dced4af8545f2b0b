"""HTTP clients for OPA's REST API over a unix socket or TCP."""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def _verifying_context() -> ssl.SSLContext:
    """httpx's default TLS context, built once per process and shared by every client: building
    one loads the CA bundle, ~20 ms of CPU holding the GIL, which each client paid on creation
    (the engine health monitor creates two a second: 40-50 ms of CPU a second in `pdp serve`,
    landing inside whatever request was being answered; docs/performance.md, issue 16)."""
    return httpx.create_ssl_context()


def http_client(addr: str, timeout: float = 2.0, limits: httpx.Limits | None = None) -> httpx.Client:
    """A keep-alive HTTP client for an OPA listening on `addr` (unix socket, host:port or URL)."""
    limits = limits or httpx.Limits()
    verify = _verifying_context()
    if addr.startswith("unix://"):
        transport = httpx.HTTPTransport(uds=addr.removeprefix("unix://"), limits=limits, verify=verify)
        return httpx.Client(base_url="http://opa", transport=transport, timeout=timeout, verify=verify)
    base = addr if addr.startswith(("http://", "https://")) else f"http://{addr}"
    return httpx.Client(base_url=base, timeout=timeout, limits=limits, verify=verify)

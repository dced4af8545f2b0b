"""HTTP clients for OPA's REST API over a unix socket or TCP."""

from __future__ import annotations

import httpx


def http_client(addr: str, timeout: float = 2.0, limits: httpx.Limits | None = None) -> httpx.Client:
    """A keep-alive HTTP client for an OPA listening on `addr` (unix socket, host:port or URL)."""
    limits = limits or httpx.Limits()
    if addr.startswith("unix://"):
        transport = httpx.HTTPTransport(uds=addr.removeprefix("unix://"), limits=limits)
        return httpx.Client(base_url="http://opa", transport=transport, timeout=timeout)
    base = addr if addr.startswith(("http://", "https://")) else f"http://{addr}"
    return httpx.Client(base_url=base, timeout=timeout, limits=limits)

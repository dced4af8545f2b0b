"""OPA's REST API through `opa-python-client` (the design card's client): status and health for
operators' commands (`pdp opa status`).

Where it is not used, and why (docs/opa-client.md):
- The per-decision path (pdp/engine/opa_http.py) keeps its own keep-alive `http.client`
  connection per thread: measured on the same OPA, `OpaClient.query_rule` costs several times as
  much per call (requests' session machinery and retry adapter, under the GIL the PDP's threads
  share), and the engine needs per-call deadlines and its own error mapping (EngineUnavailable,
  EngineTimeout, NoActiveBundle) that a generic client hides.
- The embedded sidecar listens on a unix socket by default (pdp/opa/sidecar.py), and the client
  speaks TCP only (requests, `http(s)://host:port`); the supervisor's liveness and readiness
  checks (pdp/opa/liveness.py, pdp/embedded.py) must work on that socket, so they stay on httpx.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient
from opa_client.errors import ConnectionsError


class OpaAddressError(ValueError):
    """An OPA address the client cannot reach; the message says what to give instead."""


class OpaStatusError(RuntimeError):
    """OPA did not answer its status API; the message says why."""


def opa_client(addr: str, *, timeout: float = 2.0, ca_file: str | None = None) -> OpaClient:
    """An OpaClient for OPA at `addr`: HOST:PORT, http://HOST:PORT or https://HOST:PORT (then the
    server certificate is checked against `ca_file`, or the system's CAs)."""
    if addr.startswith("unix://"):
        raise OpaAddressError(
            f"{addr}: opa-python-client speaks TCP only (requests has no unix sockets); give OPA a "
            "TCP address (pdp serve --sidecar-addr 127.0.0.1:8181) and ask that one"
        )
    url = urlsplit(addr if "://" in addr else f"http://{addr}")
    if url.scheme not in ("http", "https") or not url.hostname or url.port is None:
        raise OpaAddressError(f"{addr}: expected HOST:PORT, http://HOST:PORT or https://HOST:PORT")
    # The client's `ssl` is both "https" and requests' `verify`: a CA file, or True for the system's.
    ssl: bool | str = (ca_file or True) if url.scheme == "https" else False
    return OpaClient(host=url.hostname, port=url.port, ssl=ssl, timeout=timeout, retries=0)


@dataclass(frozen=True)
class BundleReport:
    name: str
    active_revision: str
    last_successful_activation: str
    last_successful_download: str
    # "<code>: <message>" and OPA's error lines when the last bundle fetched was refused; empty otherwise.
    errors: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return bool(self.active_revision) and not self.errors


def _errors(status: dict[str, Any]) -> tuple[str, ...]:
    lines: list[str] = []
    if status.get("code") or status.get("message"):
        lines.append(f"{status.get('code') or 'error'}: {status.get('message') or ''}".rstrip(": "))
    for error in status.get("errors") or []:
        if isinstance(error, dict):
            where = error.get("location") or {}
            place = f"{where.get('file', '')}:{where.get('row', '')}: " if isinstance(where, dict) else ""
            lines.append(f"{place}{error.get('message', error)}")
        else:
            lines.append(str(error))
    return tuple(lines)


def bundle_reports(status_doc: Any) -> list[BundleReport]:
    """The bundles of a GET /v1/status reply, sorted by name."""
    result = status_doc.get("result") if isinstance(status_doc, dict) else None
    bundles = result.get("bundles") if isinstance(result, dict) else None
    reports = []
    for name, status in sorted((bundles or {}).items()):
        if not isinstance(status, dict):
            continue
        reports.append(
            BundleReport(
                name=str(name),
                active_revision=str(status.get("active_revision") or ""),
                last_successful_activation=str(status.get("last_successful_activation") or ""),
                last_successful_download=str(status.get("last_successful_download") or ""),
                errors=_errors(status),
            )
        )
    return reports


def read_status(client: OpaClient) -> dict[str, Any]:
    """GET /v1/status; OpaStatusError naming the cause when OPA does not answer it."""
    try:
        doc: dict[str, Any] = client.get_status()
    except requests.HTTPError as exc:
        body = exc.response.text[:300] if exc.response is not None else ""
        raise OpaStatusError(f"OPA answered {exc}: {body} (is the status plugin enabled?)") from exc
    except (requests.RequestException, ConnectionsError) as exc:
        raise OpaStatusError(f"OPA at {client.root_url} does not answer: {exc}") from exc
    return doc

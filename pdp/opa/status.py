"""What OPA says about its bundle (GET /v1/status): the active revision, and why the last bundle it
downloaded was refused, if it was.

OPA verifies a downloaded bundle (signature, file digests) and compiles it before activating it;
when any of that fails it keeps the last good revision active and reports the failure as `code`
and `message` (and `errors` for compile errors) on the bundle's status, until a good bundle
activates. Decisions stay correct for the old revision, so this is not a readiness problem, but
someone must hear of it: a tampered bundle server, a key mismatch or a broken policy release.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from pdp import metrics
from pdp.opa.bundle import BUNDLE_NAME
from pdp.opa.http import http_client

# Bounds what a status line carries: OPA messages name files and digests, a few hundred bytes.
_MAX_ERRORS = 5
_MAX_TEXT = 1000


@dataclass(frozen=True)
class BundleStatus:
    active_revision: str | None
    # "<code>: <message>" of the last refused download or activation; None when the last bundle
    # OPA fetched is the active one.
    refused: str | None


def parse_bundle_status(doc: Any, bundle: str = BUNDLE_NAME) -> BundleStatus:
    """The bundle's status from a GET /v1/status reply ({"result": {"bundles": {name: {...}}}})."""
    result = doc.get("result") if isinstance(doc, dict) else None
    bundles = result.get("bundles") if isinstance(result, dict) else None
    status = bundles.get(bundle) if isinstance(bundles, dict) else None
    if not isinstance(status, dict):
        return BundleStatus(active_revision=None, refused=None)
    revision = status.get("active_revision") or None
    code, message = status.get("code"), status.get("message")
    if not code and not message:
        return BundleStatus(active_revision=revision, refused=None)
    parts = [f"{code or 'error'}: {message or ''}".rstrip(": ")]
    errors = status.get("errors")
    if isinstance(errors, list):
        for error in errors[:_MAX_ERRORS]:
            if isinstance(error, dict):
                where = error.get("location") or {}
                place = f"{where.get('file', '')}:{where.get('row', '')}: " if isinstance(where, dict) else ""
                parts.append(f"{place}{error.get('message', error)}")
            else:
                parts.append(str(error))
    text = "; ".join(parts)
    return BundleStatus(active_revision=revision, refused=text[:_MAX_TEXT])


def read_bundle_status(addr: str, bundle: str = BUNDLE_NAME, timeout: float = 0.5) -> BundleStatus:
    """Ask the OPA at `addr`. Raises httpx.HTTPError when it does not answer, ValueError when the
    answer is not JSON."""
    with http_client(addr, timeout=timeout) as client:
        resp = client.get("/v1/status")
        resp.raise_for_status()
        return parse_bundle_status(resp.json(), bundle)


def bundle_refusal(addr: str, bundle: str = BUNDLE_NAME) -> str | None:
    """Why OPA refused the last bundle it fetched, or None (also when OPA cannot be asked: a PDP
    whose OPA does not answer is not ready, and its readiness says so).

    The health monitor calls this every second; the revision OPA reports active goes into the
    `bundle_info` metric here, so a PDP that has decided nothing since a new bundle activated
    shows the new revision (`pdp status` compares PDPs by it), not the one its last decision saw."""
    try:
        status = read_bundle_status(addr, bundle)
    except (httpx.HTTPError, ValueError):
        return None
    if status.active_revision:
        metrics.decisions.revision_seen(status.active_revision)
    return status.refused

"""The certificate of destruction: a canonical JSON document and its SHA-256, which also goes
into the (hash-chained) audit trail, so the certificate cannot be altered unnoticed."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from pdp.lifecycle.audit import canonical


def issue(
    tenant: str, objects: Sequence[str], *, destroyed_at: str, decision: Mapping[str, Any], workflow_id: str
) -> tuple[str, str]:
    """(document, sha256) for the verified destruction of `objects`. Pure."""
    doc = {
        "type": "gpupaas.io/certificate-of-destruction",
        "tenant": tenant,
        "destroyed_at": destroyed_at,
        "objects_destroyed_and_verified_absent": sorted(objects),
        "decision_id": decision.get("decision_id", ""),
        "bundle_revision": decision.get("bundle_revision", ""),
        "workflow_id": workflow_id,
    }
    text = canonical(doc)
    return text, hashlib.sha256(text.encode()).hexdigest()

"""The certificate of destruction: a canonical JSON document, its SHA-256 and an Ed25519 signature
by the worker's certificate key.

The hash also goes into the (hash-chained) audit trail, so the lifecycle notices an altered
certificate; the signature lets anyone holding only the certificate and the public key (the
offboarded tenant, whose tokens are revoked; an auditor) check it came unaltered from this worker.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pdp.integrity.chain import canonical
from pdp.integrity.signing import (
    ALGORITHM,
    KeyFileError,
    key_id,
    load_key,
    load_or_create_key,
    load_public_pem,
    public_pem,
    sign,
    signature_problems,
)

# The signing helpers live in pdp/integrity/signing.py (checkpoints use them too); named here as
# well, where the lifecycle has always found them.
__all__ = [
    "ALGORITHM",
    "TYPE",
    "KeyFileError",
    "issue",
    "key_id",
    "load_key",
    "load_or_create_key",
    "load_public_pem",
    "public_pem",
    "sign",
    "signature_problems",
    "verify",
]

TYPE = "gpupaas.io/certificate-of-destruction"
DRY_RUN = "dry-run"


def issue(
    tenant: str,
    objects: Sequence[str],
    *,
    destroyed_at: str,
    decision: Mapping[str, Any],
    workflow_id: str,
    key: Ed25519PrivateKey,
    mode: str = "kubernetes",
) -> dict[str, Any]:
    """The signed certificate for the verified destruction of `objects`: the document (canonical
    JSON, naming the key that signs it), its SHA-256 and the signature over the document. Pure
    (Ed25519 signatures are deterministic). Under the dry-run adapter (`mode` "dry-run") nothing
    was destroyed, and the document says so: `status` would_destroy, `objects_would_be_destroyed`."""
    kid = key_id(key.public_key())
    dry = mode == DRY_RUN
    doc = {
        "type": TYPE,
        "mode": mode,
        "status": "would_destroy" if dry else "destroyed_and_verified_absent",
        "tenant": tenant,
        "destroyed_at": destroyed_at,
        ("objects_would_be_destroyed" if dry else "objects_destroyed_and_verified_absent"): sorted(objects),
        "decision_id": decision.get("decision_id", ""),
        "bundle_revision": decision.get("bundle_revision", ""),
        "workflow_id": workflow_id,
        "signed_with": {"algorithm": ALGORITHM, "key_id": kid},
    }
    text = canonical(doc)
    return {
        "document": text,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "signature": sign(text, key),
    }


def verify(cert: Mapping[str, Any], public_key_pem: str) -> list[str]:
    """What is wrong with a certificate (as `GET /v1/tenants/{t}/certificate` returns it) against
    the public key; empty when it verifies."""
    try:
        public = load_public_pem(public_key_pem)
    except KeyFileError as exc:
        return [str(exc)]
    text, sig = cert.get("document"), cert.get("signature")
    if not isinstance(text, str) or not isinstance(sig, Mapping):
        return ["not a signed certificate: 'document' or 'signature' is missing"]
    problems = []
    try:
        doc = json.loads(text)
    except ValueError as exc:
        return [f"the document is not JSON: {exc}"]
    if "certificate" in cert and cert["certificate"] != doc:
        problems.append("the certificate shown differs from the signed document")
    if hashlib.sha256(text.encode()).hexdigest() != cert.get("sha256"):
        problems.append("the document does not match its sha256 (altered?)")
    named = (doc.get("signed_with") or {}).get("key_id")
    if named != key_id(public) and sig.get("key_id") == key_id(public):
        # The document names its key too: a signature block relabelled onto it shows here.
        problems.append(f"the document names key {named!r}, not this public key ({key_id(public)})")
    return problems + signature_problems(text, sig, public)


def dry_run_note(cert: Mapping[str, Any]) -> str:
    """What a verifier must add about a certificate issued under the dry-run adapter ("" else)."""
    doc = cert.get("certificate")
    if not isinstance(doc, Mapping):
        try:
            doc = json.loads(str(cert.get("document", "")))
        except ValueError:
            return ""
    if not isinstance(doc, Mapping) or doc.get("mode") != DRY_RUN:
        return ""
    n = len(doc.get("objects_would_be_destroyed") or [])
    return (
        f"DRY RUN: the worker ran the dry-run adapter; nothing was destroyed "
        f"({n} objects would have been; status {doc.get('status')!r})"
    )

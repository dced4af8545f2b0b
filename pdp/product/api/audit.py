"""The audit trail (a tenant gets only its own lines), its verification, and the public key that
verifies certificates of destruction."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse

from pdp.lifecycle.runtime import current
from pdp.lifecycle.services import certificate as certificates
from pdp.lifecycle.storage import anchor, audit
from pdp.product.auth import Caller, require_admin

router = APIRouter(tags=["audit"])


@router.get("/v1/certificates/public-key")
def certificate_public_key() -> dict[str, str]:
    """The key that verifies certificates of destruction. No token: an offboarded tenant's
    tokens are revoked, and a public key is public."""
    key = current().certificate_key
    if key is None:
        raise HTTPException(503, "no certificate signing key loaded")
    public = key.public_key()
    return {
        "algorithm": certificates.ALGORITHM,
        "key_id": certificates.key_id(public),
        "public_key_pem": certificates.public_pem(public),
    }


@router.get("/v1/audit")
def audit_trail(caller: Caller, tenant: str | None = None) -> PlainTextResponse:
    if not caller.is_admin:
        tenant = caller.tenant
    rt = current()
    text = (
        anchor.export_jsonl(rt.db, tenant, rt.certificate_key)
        if rt.anchor is not None
        else audit.export_jsonl(rt.db, tenant)
    )
    return PlainTextResponse(text, media_type="application/x-ndjson")


@router.get("/v1/audit/verify")
def audit_verify(caller: Caller) -> dict[str, Any]:
    require_admin(caller)
    rt = current()
    if rt.anchor is None:
        problems = audit.verify(rt.db)
        return {"ok": not problems, "problems": [str(p) for p in problems]}
    trusted = rt.anchor.trusted or rt.anchor.key.public_key()
    report = anchor.verify(rt.db, rt.anchor.sink, trusted)
    if rt.anchor.frozen:
        report.notes.append(f"the worker no longer advances the anchor: {rt.anchor.frozen}")
    if rt.anchor.trusted is None:
        report.notes.append(
            "a self-check with the worker's own key: `pdp lifecycle audit-verify` with a trusted key "
            "and checkpoints held outside the state folder is the check that holds against its writers"
        )
    return report.as_json()

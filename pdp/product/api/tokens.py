"""Token routes of the product API: who am I, rotate, list and revoke.

The admin rotates and revokes admin tokens, metrics tokens and any tenant's; a tenant token does
so for its own tenant only (another tenant's tokens are 404, admin and metrics tokens 403). A
rotation answers the new token once and revokes the holder's earlier tokens at once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.runtime import current
from pdp.lifecycle.storage.credentials import ADMIN, METRICS, TENANT, LastAdminToken
from pdp.lifecycle.storage.store import NotFound
from pdp.product.auth import Caller, require_admin

router = APIRouter(tags=["tokens"])


class Rotation(BaseModel):
    ttl_seconds: int | None = Field(
        default=None,
        ge=1,
        description="lifetime of the new token (default and maximum: the worker's lifetime for its role)",
    )


class Revocation(BaseModel):
    reason: str = Field(default="", max_length=200)


def _tenant(caller: Principal, tenant: str) -> None:
    """404 for a tenant the caller may not see, or one that does not exist."""
    if not caller.may_act_on(tenant):
        raise HTTPException(404, f"tenant {tenant!r} not found")
    try:
        current().store.tenant(tenant)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


def _rotate(role: str, tenant: str | None, body: Rotation, caller: Principal) -> dict[str, Any]:
    ttl = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else None
    try:
        issued = current().store.credentials.rotate(role, tenant, actor=caller.actor, ttl=ttl)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    return issued.as_json()


def _revoke(
    role: str, tenant: str | None, token_id: str, body: Revocation, caller: Principal
) -> dict[str, Any]:
    credentials = current().store.credentials
    found = credentials.token(token_id)
    if found is None or found["role"] != role or found["tenant"] != tenant:
        raise HTTPException(404, f"token {token_id!r} not found")
    try:
        revoked = credentials.revoke(token_id, actor=caller.actor, reason=body.reason)
    except LastAdminToken as exc:
        raise HTTPException(409, str(exc)) from exc
    return {"token_id": token_id, "revoked": revoked, "already_revoked": not revoked}


@router.get("/v1/whoami")
def whoami(caller: Caller) -> dict[str, Any]:
    """The caller's role, tenant and token (id and expiry)."""
    return {
        "role": caller.role,
        "tenant": caller.tenant,
        "token_id": caller.token_id,
        "expires_at": caller.expires_at,
    }


@router.get("/v1/admin/tokens")
def admin_tokens(caller: Caller) -> list[dict[str, Any]]:
    require_admin(caller)
    return current().store.credentials.tokens(ADMIN)


@router.post("/v1/admin/tokens", status_code=201)
def rotate_admin(body: Rotation, caller: Caller) -> dict[str, Any]:
    """A new admin token; every earlier admin token is revoked now. Give the new one to the
    worker (PDP_LIFECYCLE_ADMIN_TOKEN or --admin-token-file) before its next start: it refuses
    the revoked one."""
    require_admin(caller)
    return _rotate(ADMIN, None, body, caller)


@router.post("/v1/admin/tokens/{token_id}/revoke")
def revoke_admin(token_id: str, body: Revocation, caller: Caller) -> dict[str, Any]:
    """Revoke one admin token (409 for the only active one: rotate it instead)."""
    require_admin(caller)
    return _revoke(ADMIN, None, token_id, body, caller)


@router.get("/v1/admin/metrics-tokens")
def metrics_tokens(caller: Caller) -> list[dict[str, Any]]:
    require_admin(caller)
    return current().store.credentials.tokens(METRICS)


@router.post("/v1/admin/metrics-tokens", status_code=201)
def rotate_metrics(body: Rotation, caller: Caller) -> dict[str, Any]:
    """A new metrics token, for Prometheus to scrape GET /metrics/tenants with and read nothing
    else; every earlier metrics token is revoked now."""
    require_admin(caller)
    return _rotate(METRICS, None, body, caller)


@router.post("/v1/admin/metrics-tokens/{token_id}/revoke")
def revoke_metrics(token_id: str, body: Revocation, caller: Caller) -> dict[str, Any]:
    require_admin(caller)
    return _revoke(METRICS, None, token_id, body, caller)


@router.get("/v1/tenants/{tenant}/tokens")
def tenant_tokens(tenant: str, caller: Caller) -> list[dict[str, Any]]:
    _tenant(caller, tenant)
    return current().store.credentials.tokens(TENANT, tenant)


@router.post("/v1/tenants/{tenant}/tokens", status_code=201)
def rotate_tenant(tenant: str, body: Rotation, caller: Caller) -> dict[str, Any]:
    """A new token for the tenant; its earlier tokens (the caller's own included) are revoked now."""
    _tenant(caller, tenant)
    record = current().store.tenant(tenant)
    if record["state"] in ("offboarding", "offboarded"):
        raise HTTPException(409, f"tenant {tenant!r} is {record['state']}: it gets no new tokens")
    return _rotate(TENANT, tenant, body, caller)


@router.post("/v1/tenants/{tenant}/tokens/{token_id}/revoke")
def revoke_tenant_token(tenant: str, token_id: str, body: Revocation, caller: Caller) -> dict[str, Any]:
    _tenant(caller, tenant)
    return _revoke(TENANT, tenant, token_id, body, caller)

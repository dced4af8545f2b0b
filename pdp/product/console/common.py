"""What the tenant and admin views share: the tenant a viewer may see, and decision records."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import ValidationError

from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.services import queries
from pdp.product.console import fields
from pdp.product.console.calls import Refused, call


def own_tenant(api: FastAPI, who: Principal, tenant: str) -> dict[str, Any]:
    """The tenant record as `GET /v1/tenants/{tenant}` gives it: 404 for another tenant's."""
    try:
        record: dict[str, Any] = call(api, "GET", "/v1/tenants/{tenant}", tenant=tenant, caller=who)
    except Refused as exc:
        raise HTTPException(exc.status, detail_text(exc.detail)) from exc
    return record


def require_admin(who: Principal) -> None:
    if not who.is_admin:
        raise HTTPException(403, "this page is for platform admins")


def decisions(tenant: str | None = None) -> list[dict[str, Any]]:
    """The decision records of the audit trail (of one tenant), newest first."""
    found = [r for r in queries.audit_records(tenant) if r.get("event") == "decision"]
    return list(reversed(found))


def detail_text(detail: Any) -> str:
    """An API error detail in words: a sentence as is, a decision as its reason codes."""
    if isinstance(detail, dict) and (detail.get("outcome") or detail.get("status")):
        codes = detail.get("reason_codes") or [r.get("code") for r in detail.get("reasons", [])]
        return f"{detail.get('outcome') or detail.get('status')}: {', '.join(map(str, codes))}"
    if isinstance(detail, dict):  # any other mapping as "Label: value" pairs, never as JSON
        return "; ".join(f"{fields.label(str(k))}: {detail_text(v)}" for k, v in sorted(detail.items()))
    if isinstance(detail, list):  # FastAPI's validation errors, or any list, item by item
        return "; ".join(detail_text(i) for i in detail)
    return fields.value_text("", detail)


def form_problems(exc: ValidationError) -> str:
    """A rejected form in words: each field's path and what is wrong with it."""
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())

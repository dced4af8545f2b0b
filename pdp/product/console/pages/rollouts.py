"""Policy rollouts (admin only): the policy the lifecycle decides with now (`GET /v1/policy`), and
each rollout the audit trail records (`policy.rollout.*`: started, reported, approval, activated,
rolled back, failed...), newest first, with the newest rollouts' state as `GET
/v1/policy/rollouts/{rollout}` gives it — both asked through the API's own routes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response

from pdp.lifecycle.services import queries
from pdp.product.console.calls import Refused, call
from pdp.product.console.common import detail_text, require_admin
from pdp.product.console.render import page
from pdp.product.console.session import Viewer

DETAILED = 5  # the newest rollouts shown with their state


def rollouts(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The audit trail's rollout records grouped per rollout (newest rollout first, each one's
    events in order): `{"rollout", "events": [record...], "last": event name}`."""
    per: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if str(r.get("event", "")).startswith("policy.rollout."):
            rollout = str((r.get("detail") or {}).get("rollout") or r.get("workflow_id") or "?")
            per.setdefault(rollout, []).append(r)
    ordered = sorted(per.items(), key=lambda kv: str(kv[1][-1].get("at", "")), reverse=True)
    return [{"rollout": k, "events": v, "last": v[-1].get("event", "")} for k, v in ordered]


def router(api: FastAPI) -> APIRouter:
    r = APIRouter()

    @r.get("/admin/rollouts")
    def all_rollouts(request: Request, who: Viewer) -> Response:
        require_admin(who)
        active = call(api, "GET", "/v1/policy", caller=who)
        found = rollouts(queries.audit_records())
        for entry in found[:DETAILED]:
            try:
                entry["state"] = call(
                    api, "GET", "/v1/policy/rollouts/{rollout}", rollout=entry["rollout"], caller=who
                )
            except Refused as exc:
                entry["state"] = {"unavailable": detail_text(exc.detail)}
        return page(request, "rollouts.html", who, title="Policy rollouts", active=active, rollouts=found)

    return r

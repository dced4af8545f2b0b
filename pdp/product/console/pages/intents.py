"""Forms for the tenant's other requests: batch size, GPU sharing, quota change, SLA change and
offboarding. Each one previews the PDP's decision, then submits through the API's route function
with the API's own body model, as the deploy and scale forms do (pdp/product/console/asking.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.services import queries
from pdp.product.console import session
from pdp.product.console.asking import act
from pdp.product.console.calls import call
from pdp.product.console.common import form_problems, own_tenant
from pdp.product.console.render import page
from pdp.product.console.session import Viewer

SHARING_MODES = ("none", "time-slicing", "mps", "mig")


@dataclass(frozen=True)
class Control:
    name: str
    label: str
    kind: str = "text"  # text, number or select
    choices: tuple[tuple[str, str], ...] = ()  # (value, label) of a select
    required: bool = True


@dataclass(frozen=True)
class Kind:
    """One request form: its intent kind, its controls, and how the form becomes the API's call."""

    slug: str
    title: str
    intent: str
    controls: Callable[[str], list[Control]]
    # form values -> (the API body model instance, the intent payload the API's check decides)
    build: Callable[[str, dict[str, str]], tuple[BaseModel, dict[str, Any]]]
    path: str
    extra: Callable[[dict[str, str]], dict[str, Any]] = field(default=lambda form: {})
    with_usage: bool = True


def _deployment_choices(tenant: str) -> tuple[tuple[str, str], ...]:
    return tuple((d["name"], d["name"]) for d in queries.deployments(tenant))


def _classes() -> tuple[str, ...]:
    return tuple(sorted(queries.fleet().get("gpu_classes") or {}))


def _batch(tenant: str, form: dict[str, str]) -> tuple[BaseModel, dict[str, Any]]:
    from pdp.product.api.models import BatchSizeRequest

    body = BatchSizeRequest.model_validate({"batch_size": form.get("batch_size")})
    return body, {"deployment": form.get("deployment", ""), "batch_size": body.batch_size}


def _sharing(tenant: str, form: dict[str, str]) -> tuple[BaseModel, dict[str, Any]]:
    from pdp.product.api.models import SharingRequest

    asked = {"mode": form.get("mode"), "gpu_class": form.get("gpu_class") or None}
    body = SharingRequest.model_validate(asked)
    return body, body.model_dump()


def _quota(tenant: str, form: dict[str, str]) -> tuple[BaseModel, dict[str, Any]]:
    from pdp.product.api.models import QuotaRequest

    entitlements = {c: form[f"q_{c}"] for c in _classes() if form.get(f"q_{c}", "").strip()}
    body = QuotaRequest.model_validate({"entitlements": entitlements})
    return body, body.model_dump()


def _sla(tenant: str, form: dict[str, str]) -> tuple[BaseModel, dict[str, Any]]:
    from pdp.product.api.models import SlaChange

    body = SlaChange.model_validate({k: form.get(k) or None for k in ("tier", "isolation")})
    return body, body.model_dump()


def _offboard(tenant: str, form: dict[str, str]) -> tuple[BaseModel, dict[str, Any]]:
    from pdp.product.api.models import OffboardRequest

    body = OffboardRequest.model_validate({"reason": form.get("reason", "")})
    running = [d for d in queries.deployments(tenant) if d["state"] == "running"]
    return body, {"active_workloads": len(running), "reason": body.reason}


KINDS = {
    k.slug: k
    for k in (
        Kind(
            "batch-size", "Change a deployment's batch size", "change_batch_size",
            lambda t: [Control("deployment", "Deployment", "select", _deployment_choices(t)),
                       Control("batch_size", "Batch size", "number")],
            _batch, "/v1/tenants/{tenant}/deployments/{name}/batch-size",
            extra=lambda form: {"name": form.get("deployment", "")},
        ),
        Kind(
            "gpu-sharing", "Request GPU sharing", "request_gpu_sharing",
            lambda t: [Control("mode", "Sharing mode", "select", tuple((m, m) for m in SHARING_MODES)),
                       Control("gpu_class", "GPU class (optional)", "select",
                               (("", "all classes"), *((c, c) for c in _classes())), required=False)],
            _sharing, "/v1/tenants/{tenant}/gpu-sharing",
        ),
        Kind(
            "quota", "Change entitlements (the complete new set)", "update_quotas",
            lambda t: [Control(f"q_{c}", f"{c} GPUs", "number", required=False) for c in _classes()],
            _quota, "/v1/tenants/{tenant}/quotas",
        ),
        Kind(
            "sla", "Change the SLA tier or isolation", "change_sla",
            lambda t: [Control("tier", "Tier", "select", (("", "unchanged"), ("enterprise", "enterprise"),
                                                            ("standard", "standard"), ("spot", "spot")),
                               required=False),
                       Control("isolation", "Isolation", "select",
                               (("", "unchanged"), ("dedicated", "dedicated"), ("shared", "shared")),
                               required=False)],
            _sla, "/v1/tenants/{tenant}/sla",
        ),
        Kind(
            "offboard", "Offboard the tenant", "offboard_tenant",
            lambda t: [Control("reason", "Reason", required=False)],
            _offboard, "/v1/tenants/{tenant}/offboard", with_usage=False,
        ),
    )
}  # fmt: skip


def _defaults(kind: Kind, tenant: str) -> dict[str, str]:
    if kind.slug == "quota":
        policy = queries.tenant(tenant)["policy"]
        return {f"q_{c}": str(n) for c, n in (policy.get("entitlements") or {}).items()}
    return {}


def router(api: FastAPI) -> APIRouter:
    r = APIRouter()

    def _kind(slug: str) -> Kind:
        if slug not in KINDS:
            raise HTTPException(404, f"no request form {slug!r}")
        return KINDS[slug]

    def _page(
        request: Request, who: Principal, tenant: str, kind: Kind, form: dict[str, str], **outcome: Any
    ) -> Response:
        context = {"preview": None, "result": None, "problem": "", **outcome}
        return page(
            request, "intent.html", who, title=kind.title, tenant=tenant, kind=kind,
            controls=kind.controls(tenant), form=form, kinds=KINDS.values(), **context,
        )  # fmt: skip

    @r.get("/tenants/{tenant}/ask/{slug}")
    def form(request: Request, tenant: str, slug: str, who: Viewer) -> Response:
        own_tenant(api, who, tenant)
        kind = _kind(slug)
        return _page(request, who, tenant, kind, _defaults(kind, tenant))

    @r.post("/tenants/{tenant}/ask/{slug}", dependencies=[session.CsrfChecked])
    async def ask(request: Request, tenant: str, slug: str, who: Viewer) -> Response:
        values = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        # The API's route functions block (they wait for the request's decision): off the loop.
        return await run_in_threadpool(_ask, request, tenant, slug, who, values)

    def _ask(request: Request, tenant: str, slug: str, who: Principal, values: dict[str, str]) -> Response:
        own_tenant(api, who, tenant)
        kind = _kind(slug)
        form = {k: v for k, v in values.items() if k not in (session.CSRF_FIELD, "action")}
        try:
            body, payload = kind.build(tenant, form)
        except ValidationError as exc:
            problems = form_problems(exc)
            return _page(request, who, tenant, kind, form, status_code=422, problem=problems)
        arguments = {"tenant": tenant, "body": body, "caller": who, **kind.extra(form)}
        outcome = act(
            who, values.get("action", "preview"), kind.intent, tenant, payload,
            lambda: call(api, "POST", kind.path, **arguments), kind.with_usage,
        )  # fmt: skip
        return _page(request, who, tenant, kind, form, **outcome)

    return r

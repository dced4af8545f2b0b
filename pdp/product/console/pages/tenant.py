"""Tenant pages: entitlements against usage, deployments with their placement and the decision
that placed them, and request forms that show the PDP's decision before anything is submitted.

A preview asks the PDP (`queries.decide`, pdp/lifecycle/services/queries.py) with the intent
the API's check builds; a submission then goes through the API's own route function
(pdp/product/console/calls.py), which decides again and starts the request's workflow."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, HTTPException, Request
from pydantic import ValidationError
from starlette.responses import Response

from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.services import queries
from pdp.lifecycle.services.scaling import scale_payload
from pdp.product.api.guards import deployment_named
from pdp.product.console import session
from pdp.product.console.asking import act
from pdp.product.console.calls import Refused, call
from pdp.product.console.common import decisions, detail_text, form_problems, own_tenant
from pdp.product.console.render import page
from pdp.product.console.session import Viewer

BAR_WIDTH = 300
DEPLOYMENTS = "/v1/tenants/{tenant}/deployments"


def _usage_rows(policy: dict[str, Any], usage: dict[str, int]) -> list[dict[str, Any]]:
    entitled: dict[str, int] = dict(policy.get("entitlements") or {})
    rows = []
    for gpu_class in sorted(set(entitled) | set(usage)):
        used, limit = int(usage.get(gpu_class, 0)), int(entitled.get(gpu_class, 0))
        scale = max(used, limit, 1)
        rows.append(
            {"gpu_class": gpu_class, "used": used, "entitled": limit, "width": BAR_WIDTH * used // scale}
        )
    return rows


def _clusters() -> list[dict[str, str]]:
    clusters = queries.fleet().get("clusters") or {}
    return [
        {"name": name, "region": str(c.get("region", "")), "jurisdiction": str(c.get("jurisdiction", ""))}
        for name, c in sorted(clusters.items())
    ]


def router(api: FastAPI) -> APIRouter:
    r = APIRouter()

    @r.get("/tenants/{tenant}")
    def overview(request: Request, tenant: str, who: Viewer) -> Response:
        record = own_tenant(api, who, tenant)
        deployments = call(api, "GET", "/v1/tenants/{tenant}/deployments", tenant=tenant, caller=who)
        placed = queries.workloads(tenant)
        for d in deployments:
            kept = placed.get(d["name"]) or {}
            d.update(
                placement=kept.get("placement"),
                decision_id=kept.get("decision_id"),
                bundle_revision=kept.get("bundle_revision"),
            )
        view = call(api, "GET", "/v1/capacity", caller=who) if not who.is_admin else {}
        return page(
            request,
            "tenant.html",
            who,
            title=tenant,
            record=record,
            usage=_usage_rows(record["policy"], queries.usage(tenant)),
            regions=view.get("regions", []),
            deployments=deployments,
            approvals=queries.approvals(tenant, open_only=True),
            history=decisions(tenant)[:20],
        )

    def _deploy_page(
        request: Request, who: Principal, tenant: str, form: dict[str, Any], **outcome: Any
    ) -> Response:
        record = own_tenant(api, who, tenant)
        classes = sorted((record["policy"].get("entitlements") or {}).keys())
        context = {"preview": None, "result": None, "problem": "", **outcome}
        return page(
            request, "deploy.html", who, title="Deploy", tenant=tenant, form=form, classes=classes,
            clusters=_clusters(), **context,
        )  # fmt: skip

    @r.get("/tenants/{tenant}/deploy")
    def deploy_form(request: Request, tenant: str, who: Viewer) -> Response:
        form = {"deployment": "", "gpu_class": "", "gpus_per_replica": 1, "replicas": 1, "cluster": ""}
        return _deploy_page(request, who, tenant, form)

    @r.post("/tenants/{tenant}/deploy", dependencies=[session.CsrfChecked])
    def deploy(
        request: Request,
        tenant: str,
        who: Viewer,
        deployment: Annotated[str, Form()],
        gpu_class: Annotated[str, Form()],
        gpus_per_replica: Annotated[str, Form()],
        replicas: Annotated[str, Form()],
        cluster: Annotated[str, Form()] = "",
        action: Annotated[str, Form()] = "preview",
    ) -> Response:
        from pdp.product.api.models import DeployRequest  # the API's own body model

        own_tenant(api, who, tenant)
        form = {
            "deployment": deployment, "gpu_class": gpu_class, "gpus_per_replica": gpus_per_replica,
            "replicas": replicas, "cluster": cluster,
        }  # fmt: skip
        try:
            body = DeployRequest.model_validate({**form, "cluster": cluster or None})
        except ValidationError as exc:
            problems = form_problems(exc)
            return _deploy_page(request, who, tenant, form, status_code=422, problem=problems)
        outcome = act(
            who, action, "deploy_model", tenant, body.model_dump(),
            lambda: call(api, "POST", DEPLOYMENTS, tenant=tenant, body=body, caller=who),
        )  # fmt: skip
        return _deploy_page(request, who, tenant, form, **outcome)

    def _scale_page(
        request: Request, who: Principal, tenant: str, name: str, form: dict[str, Any], **outcome: Any
    ) -> Response:
        own_tenant(api, who, tenant)
        context = {"preview": None, "result": None, "problem": "", **outcome}
        dep = deployment_named(tenant, name)
        return page(
            request, "scale.html", who, title=f"Scale {name}", tenant=tenant, deployment=dep, form=form,
            **context,
        )  # fmt: skip

    @r.get("/tenants/{tenant}/deployments/{name}/scale")
    def scale_form(request: Request, tenant: str, name: str, who: Viewer) -> Response:
        own_tenant(api, who, tenant)
        replicas = deployment_named(tenant, name)["spec"]["replicas"]
        return _scale_page(request, who, tenant, name, {"target_replicas": replicas})

    @r.post("/tenants/{tenant}/deployments/{name}/scale", dependencies=[session.CsrfChecked])
    def scale(
        request: Request,
        tenant: str,
        name: str,
        who: Viewer,
        target_replicas: Annotated[str, Form()],
        action: Annotated[str, Form()] = "preview",
    ) -> Response:
        from pdp.product.api.models import ScaleRequest

        own_tenant(api, who, tenant)
        form = {"target_replicas": target_replicas}
        try:
            body = ScaleRequest.model_validate(form)
        except ValidationError as exc:
            problems = form_problems(exc)
            return _scale_page(request, who, tenant, name, form, status_code=422, problem=problems)
        payload = scale_payload(deployment_named(tenant, name), body.target_replicas)
        path = "/v1/tenants/{tenant}/deployments/{name}/scale"
        outcome = act(
            who, action, "scale", tenant, payload,
            lambda: call(api, "POST", path, tenant=tenant, name=name, body=body, caller=who),
        )  # fmt: skip
        return _scale_page(request, who, tenant, name, form, **outcome)

    @r.get("/tenants/{tenant}/audit")
    def audit_records(
        request: Request, tenant: str, who: Viewer, decision_id: str = "", workflow_id: str = ""
    ) -> Response:
        """The tenant's own audit records (what `GET /v1/audit` exports for it), by decision or request."""
        own_tenant(api, who, tenant)
        found = [
            r
            for r in queries.audit_records(tenant)
            if (not decision_id or r.get("decision_id") == decision_id)
            and (not workflow_id or r.get("workflow_id") == workflow_id)
        ]
        return page(
            request, "audit_records.html", who, title="Audit records", tenant=tenant, records=found[-200:],
            decision_id=decision_id, workflow_id=workflow_id,
        )  # fmt: skip

    @r.get("/tenants/{tenant}/requests/{workflow_id}")
    def request_status(request: Request, tenant: str, workflow_id: str, who: Viewer) -> Response:
        own_tenant(api, who, tenant)
        try:
            wf = call(api, "GET", "/v1/workflows/{workflow_id}", workflow_id=workflow_id, caller=who)
        except Refused as exc:
            raise HTTPException(exc.status, detail_text(exc.detail)) from exc
        if wf.get("tenant") != tenant:
            raise HTTPException(404, f"workflow {workflow_id!r} not found")
        return page(request, "request.html", who, title=workflow_id, wf=wf)

    return r

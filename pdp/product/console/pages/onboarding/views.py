"""`/console/admin/tenants/new`: the admin enters a new tenant's policy, previews the PDP's
create_tenant decision (nothing is created: no tenant, no token, no workflow), then submits it
through the API's one onboarding path, `onboard` (pdp/product/api/tenants.py: validation, 409 for
a taken name, the PDP's check, the store, the one-time token, the onboarding workflow).

Every problem names its field and the form comes back with what was entered. A tenant's session
is refused (403) on the page and its POST, which also needs the console's CSRF field."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from pdp.intents import InvalidIntent
from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.services import queries
from pdp.product.api import accepted
from pdp.product.api.tenants import onboard, onboard_problems, onboarding_intent, taken
from pdp.product.console import session
from pdp.product.console.common import detail_text, require_admin
from pdp.product.console.pages.onboarding import form as tenant_form
from pdp.product.console.pages.onboarding.form import BLANK, Draft, Problem
from pdp.product.console.render import page
from pdp.product.console.session import Viewer
from pdp.schemas.errors import sentence

PATH = "/admin/tenants/new"
TITLE = "Onboard a tenant"


def _groups() -> tuple[tuple[str, ...], tuple[tenant_form.Group, ...]]:
    fleet = queries.fleet()
    classes = tuple(sorted(fleet.get("gpu_classes") or {}))
    return classes, tenant_form.groups(classes, fleet.get("clusters") or {})


def _page(
    request: Request, who: Principal, form: dict[str, str], status_code: int = 200, **shown: Any
) -> Response:
    problems: list[Problem] = shown.pop("problems", [])
    errors: dict[str, list[str]] = {}
    for p in problems:
        errors.setdefault(p.control, []).append(p.sentence)
    context = {"preview": None, "refused": None, "result": None, **shown}
    return page(
        request, "onboard.html", who, status_code=status_code, title=TITLE, groups=_groups()[1],
        form=form, problems=problems, errors=errors, **context,
    )  # fmt: skip


def checked(form: dict[str, str]) -> Draft:
    """The policy of `form` and every problem of it: the values that are not numbers, then the
    API's own validation (which does not say again that a field left out for them is required)."""
    classes, groups = _groups()
    controls = tenant_form.controls(groups)
    draft = tenant_form.read(form, classes)
    # "tenant.entitlements.H100-80GB: 'abc' is not a whole number" covers tenant.entitlements
    covered = {".".join(p.sentence.split(":")[0].split(".")[:2]) for p in draft.problems}
    problems = list(draft.problems)
    for text in onboard_problems(draft.policy):
        if text.removesuffix(" is required") not in covered:
            problems.append(Problem(tenant_form.control_of(text, controls), text))
    return Draft(draft.policy, problems)


def _preview(request: Request, who: Principal, form: dict[str, str], policy: dict[str, Any]) -> Response:
    """The PDP's decision on onboarding `policy`, and the 409 of a taken name: nothing is created."""
    reason = taken(str(policy["name"]))
    problems = [Problem("name", f"tenant.name: {reason}")] if reason else []
    try:
        decision = queries.decide(onboarding_intent(policy, who.actor))
    except InvalidIntent as exc:
        problems.append(Problem("", sentence(exc.field, exc.problem)))
        return _page(request, who, form, 422, problems=problems)
    return _page(request, who, form, 409 if reason else 200, problems=problems, preview=decision)


def _submit(request: Request, who: Principal, form: dict[str, str], policy: dict[str, Any]) -> Response:
    try:
        workflow_id, answer = onboard(policy, who)
    except HTTPException as exc:
        if exc.status_code == 403 and isinstance(exc.detail, dict):  # the PDP's DENY
            problems = [Problem("", f"Refused: {detail_text(exc.detail)}")]
            return _page(request, who, form, 403, problems=problems, refused=exc.detail)
        control = "name" if exc.status_code == 409 else ""
        problems = [Problem(control, f"tenant.name: {exc.detail}" if control else detail_text(exc.detail))]
        return _page(request, who, form, exc.status_code, problems=problems)
    # The workflow decides again; its first decision says where onboarding stands (or "accepted").
    made = accepted.settled(workflow_id) or {}
    result = {"workflow_id": workflow_id, "status": "accepted", **made, **answer}
    return _page(request, who, dict(BLANK), result=result)


def router(api: FastAPI) -> APIRouter:
    r = APIRouter()

    @r.get(PATH)
    def onboarding_form(request: Request, who: Viewer) -> Response:
        require_admin(who)
        return _page(request, who, dict(BLANK))

    @r.post(PATH, dependencies=[session.CsrfChecked])
    async def onboarding(request: Request, who: Viewer) -> Response:
        require_admin(who)
        values = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        # onboard() and the wait for the workflow's decision block: off the event loop.
        return await run_in_threadpool(_act, request, who, values)

    def _act(request: Request, who: Principal, values: dict[str, str]) -> Response:
        form = {k: v for k, v in values.items() if k not in (session.CSRF_FIELD, "action")}
        draft = checked(form)
        if draft.problems:
            return _page(request, who, form, 422, problems=draft.problems)
        if values.get("action") == "submit":
            return _submit(request, who, form, draft.policy)
        return _preview(request, who, form, draft.policy)

    return r

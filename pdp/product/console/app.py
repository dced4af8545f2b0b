"""The console as an application mounted into the lifecycle's API: sign-in and sign-out, the
tenant and admin pages, its stylesheet, and errors as pages (a lost session goes to sign-in)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Form, Request
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from pdp.lifecycle.services import queries
from pdp.lifecycle.services.queries import Unauthenticated
from pdp.product.console import admin_views, decision_views, intent_forms, session, tenant_views
from pdp.product.console.render import page
from pdp.product.console.session import PREFIX, LoginRequired, Viewer


def create(api: FastAPI) -> FastAPI:
    """The console app; `api` is the product API whose route functions it acts through."""
    app = FastAPI(title="gpupaas console", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")

    @app.exception_handler(LoginRequired)
    def login_required(request: Request, exc: LoginRequired) -> Response:
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        session.clear_cookies(response)
        return response

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        try:
            who = session.viewer(request)
        except LoginRequired:
            who = None
        return page(
            request, "error.html", who, status_code=exc.status_code, title=str(exc.status_code),
            status=exc.status_code, message=str(exc.detail),
        )  # fmt: skip

    @app.get("/")
    def home(who: Viewer) -> Response:
        target = "/admin/approvals" if who.is_admin else f"/tenants/{who.tenant}"
        return RedirectResponse(PREFIX + target, status_code=303)

    @app.get("/login")
    def login_form(request: Request) -> Response:
        return page(request, "login.html", None, title="Sign in", problem="")

    @app.post("/login", dependencies=[session.CsrfChecked])
    def login(request: Request, token: Annotated[str, Form()]) -> Response:
        try:
            queries.authenticate(token.strip())
        except Unauthenticated as exc:
            return page(request, "login.html", None, status_code=401, title="Sign in", problem=str(exc))
        response = RedirectResponse(f"{PREFIX}/", status_code=303)
        # A session cookie (no max-age): it ends with the browser, the token's own expiry and
        # revocation end it sooner.
        session.set_cookie(request, response, session.SESSION_COOKIE, token.strip(), None)
        return response

    @app.post("/logout", dependencies=[session.CsrfChecked])
    def logout() -> Response:
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        session.clear_cookies(response)
        return response

    app.include_router(tenant_views.router(api))
    app.include_router(intent_forms.router(api))
    app.include_router(admin_views.router(api))
    app.include_router(decision_views.router(api))
    return app

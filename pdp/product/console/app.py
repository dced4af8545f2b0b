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
from pdp.product.console import pages, session
from pdp.product.console.common import detail_text
from pdp.product.console.render import page
from pdp.product.console.session import PREFIX, LoginRequired, Viewer
from pdp.product.console.sessions import Sessions
from pdp.product.console.throttle import LoginThrottle


def create(
    api: FastAPI, *, sessions: Sessions | None = None, throttle: LoginThrottle | None = None
) -> FastAPI:
    """The console app; `api` is the product API whose route functions it acts through. `sessions`
    and `throttle` are given by tests (a clock of their own); by default the app makes its own."""
    app = FastAPI(title="gpupaas console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sessions = Sessions() if sessions is None else sessions
    throttle = LoginThrottle() if throttle is None else throttle
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
            status=exc.status_code, message=detail_text(exc.detail),
        )  # fmt: skip

    @app.get("/")
    def home(who: Viewer) -> Response:
        target = "/admin/approvals" if who.is_admin else f"/tenants/{who.tenant}"
        return RedirectResponse(PREFIX + target, status_code=303)

    @app.get("/login")
    def login_form(request: Request) -> Response:
        return page(request, "login.html", None, title="Sign in", problem="")

    @app.post("/login", dependencies=[session.CsrfChecked])
    def login(request: Request, account: Annotated[str, Form()], token: Annotated[str, Form()]) -> Response:
        account = account.strip()
        source = request.client.host if request.client else "unknown"
        wait = throttle.attempt(source, account)
        if wait:
            problem = f"Too many sign-in attempts: try again in {wait} s."
            response = page(request, "login.html", None, status_code=429, title="Sign in", problem=problem)
            response.headers["Retry-After"] = str(wait)
            return response
        try:
            who = queries.authenticate(token.strip())
        except Unauthenticated as exc:
            return page(request, "login.html", None, status_code=401, title="Sign in", problem=str(exc))
        if account != ("admin" if who.is_admin else who.tenant):
            problem = f"this token does not sign in to {account!r}"
            return page(request, "login.html", None, status_code=401, title="Sign in", problem=problem)
        throttle.succeeded(source, account)
        earlier = request.cookies.get(session.SESSION_COOKIE)
        if earlier:  # signing in again (as someone else, perhaps) leaves no second session behind
            session.sessions(request).close(earlier)
        response = RedirectResponse(f"{PREFIX}/", status_code=303)
        # A cookie without max-age: it ends with the browser; the server ends the session sooner
        # (sign-out, idle and absolute limits, the token's expiry, rotation or revocation).
        session.set_cookie(
            request, response, session.SESSION_COOKIE, session.sessions(request).open(who.token_id), None
        )
        return response

    @app.post("/logout", dependencies=[session.CsrfChecked])
    def logout(request: Request) -> Response:
        session_id = request.cookies.get(session.SESSION_COOKIE)
        if session_id:
            session.sessions(request).close(session_id)
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        session.clear_cookies(response)
        return response

    for router in pages.routers(api):
        app.include_router(router)
    return app

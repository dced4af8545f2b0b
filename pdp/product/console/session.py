"""Who is looking at the console, and whether a form came from it.

- Sign-in names the account (a tenant, or "admin") and gives its bearer token, at most as often
  as the throttle allows (pdp/product/console/throttle.py). The session is then held by the
  server (pdp/product/console/sessions.py); the browser's HttpOnly, SameSite=Strict cookie
  (Secure unless the console is reached on loopback) carries only its random id. Every request
  checks the token behind the session against the credential store by its id, as the API checks
  a token: a token that expired, was rotated out or revoked ends the session on the next page,
  and so do sign-out and the session's idle and absolute limits.
- Every form carries a CSRF token: a random nonce in a hidden field and, signed with a key of this
  process (itsdangerous), in a cookie bound to the session it was issued for. A POST whose field and
  cookie disagree, whose cookie is forged or older than CSRF_MAX_AGE, or that was issued to another
  session is refused (403) before anything runs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.responses import Response

from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.services import queries
from pdp.lifecycle.services.queries import Unauthenticated
from pdp.product.console.sessions import Sessions

PREFIX = "/console"
SESSION_COOKIE = "pdp_console_session"
CSRF_COOKIE = "pdp_console_csrf"
CSRF_FIELD = "csrf"
CSRF_MAX_AGE = 3600
LOOPBACK = {"127.0.0.1", "::1", "localhost"}

# Per process: a restart makes the open forms stale (they are simply reloaded), never forgeable.
_signer = URLSafeTimedSerializer(secrets.token_bytes(32), salt="pdp-console-csrf")


class LoginRequired(Exception):
    """No session, or its token is no longer valid; the message says which."""


def _secure(request: Request) -> bool:
    return request.url.scheme == "https" or (request.url.hostname or "") not in LOOPBACK


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def clear_cookies(response: Response) -> None:
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path=PREFIX)


def sessions(request: Request) -> Sessions:
    held: Sessions = request.app.state.sessions  # the console app's (pdp/product/console/app.py)
    return held


def viewer(request: Request) -> Principal:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        raise LoginRequired("sign in with your token")
    token_id = sessions(request).token_id(session_id)
    if token_id is None:
        raise LoginRequired("your session ended: sign in again")
    try:
        return queries.authenticate_id(token_id)
    except Unauthenticated as exc:
        sessions(request).close(session_id)
        raise LoginRequired(str(exc)) from exc


Viewer = Annotated[Principal, Depends(viewer)]


def _session_digest(request: Request) -> str:
    session_id = request.cookies.get(SESSION_COOKIE, "")
    return hashlib.sha256(session_id.encode()).hexdigest()[:32]


def issue_csrf(request: Request, response: Response, nonce: str) -> None:
    """Bind `nonce` (the hidden field of the page's forms) to this session, in a signed cookie."""
    signed = _signer.dumps({"nonce": nonce, "session": _session_digest(request)})
    set_cookie(request, response, CSRF_COOKIE, signed, CSRF_MAX_AGE)


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


async def check_csrf(request: Request) -> None:
    """A dependency of every POST: the form's field must match the signed cookie of this session."""
    form = await request.form()
    field = form.get(CSRF_FIELD)
    cookie = request.cookies.get(CSRF_COOKIE)
    refused = HTTPException(403, "this form expired or was not sent by this console: reload the page")
    if not isinstance(field, str) or not cookie:
        raise refused
    try:
        issued = _signer.loads(cookie, max_age=CSRF_MAX_AGE)
    except BadSignature as exc:
        raise refused from exc
    if not isinstance(issued, dict):
        raise refused
    same_nonce = hmac.compare_digest(str(issued.get("nonce", "")), field)
    same_session = hmac.compare_digest(str(issued.get("session", "")), _session_digest(request))
    if not (same_nonce and same_session):
        raise refused


CsrfChecked = Depends(check_csrf)

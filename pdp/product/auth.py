"""Who is calling the product API: the bearer token, checked against the credential store.

The scheme is declared with FastAPI's HTTPBearer, so /openapi.json lists it under
components.securitySchemes and every route that needs a token says so.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pdp.lifecycle.bearer_tokens import Principal
from pdp.lifecycle.runtime import current
from pdp.lifecycle.storage.credentials import ADMIN, METRICS, SIGN_IN_ROLES, Unauthenticated, WrongRole

SCHEME = HTTPBearer(
    scheme_name="bearer",
    description=(
        "An admin token (the worker's PDP_LIFECYCLE_ADMIN_TOKEN) or a tenant token (returned once "
        "by POST /v1/tenants or a rotation); GET /metrics/tenants also takes a metrics token. Tokens "
        "expire and can be rotated and revoked: /v1/admin/tokens, /v1/tenants/{tenant}/tokens, "
        "/v1/admin/metrics-tokens."
    ),
    auto_error=False,  # a missing token is a 401 with WWW-Authenticate, said below
)


def _authenticated(credentials: HTTPAuthorizationCredentials | None, roles: tuple[str, ...]) -> Principal:
    if credentials is None:
        raise HTTPException(401, "a valid bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    try:
        return current().store.credentials.authenticate(credentials.credentials, roles)
    except WrongRole as exc:
        raise HTTPException(403, str(exc)) from exc
    except Unauthenticated as exc:
        raise HTTPException(
            401, str(exc), headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from exc


def principal(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(SCHEME)],
) -> Principal:
    """An admin or a tenant (credentials.SIGN_IN_ROLES); a metrics token is a 403."""
    return _authenticated(credentials, SIGN_IN_ROLES)


def metrics_reader(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(SCHEME)],
) -> Principal:
    """The admin or a metrics token (Prometheus's); a tenant's is a 403."""
    return _authenticated(credentials, (ADMIN, METRICS))


Caller = Annotated[Principal, Depends(principal)]
MetricsReader = Annotated[Principal, Depends(metrics_reader)]


def require_admin(caller: Principal) -> None:
    if not caller.is_admin:
        raise HTTPException(403, "this call needs an admin token")

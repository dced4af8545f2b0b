"""Who asks a decision front (gRPC, HTTP), and whether they may ask this.

A front with a token file (pdp/api/token_file.py) answers only callers that present one of its
tokens (`Authorization: Bearer TOKEN`, an HTTP header or gRPC metadata), and the token's
principal is who asked: the decision log records it (`principal`), never the intent's `actor`,
which the caller writes itself. A front without one serves loopback or a unix socket only (the
serve command refuses anything else at start, `require_credentials`), and its callers are
`local`.

A tenant principal may ask only about itself, refused before anything is evaluated: every intent
must be of a kind whose tenant is the intent's `tenant` field, naming its own. The kinds whose
tenant the policies derive (from a workload's namespace: admit_workload, place_workload), the
fleet's kinds and create_tenant are the substrates' and the administrator's questions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pdp.api.token_file import LOCAL, BearerTokens, Principal
from pdp.net.listen import ListenError, is_loopback

# policies/gpupaas/lib/lib.rego named_tenant_kinds: the policies read these kinds' tenant from
# input.tenant (tests/api/test_decision_auth.py holds the two equal).
NAMED_TENANT_KINDS = frozenset(
    {
        "deploy_model",
        "scale",
        "change_batch_size",
        "request_gpu_sharing",
        "update_quotas",
        "offboard_tenant",
        "preempt",
        "change_sla",
        "reclaim",
        "sla_breach",
        "remediate_drift",
    }
)


class Unauthenticated(Exception):
    """No credential, or one the front does not hold (HTTP 401, gRPC UNAUTHENTICATED)."""


class Forbidden(Exception):
    """The principal may not ask this (HTTP 403, gRPC PERMISSION_DENIED)."""


def authenticate(tokens: BearerTokens | None, authorization: str | None) -> Principal:
    """The principal of an `Authorization` value; LOCAL when the front holds no tokens."""
    if tokens is None:
        return LOCAL
    scheme, _, credential = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthenticated("a bearer token is required (Authorization: Bearer <token>)")
    principal = tokens.principal_of(credential.strip())
    if principal is None:
        raise Unauthenticated("the bearer token is not valid")
    return principal


def authorize(principal: Principal, intents: Iterable[Any]) -> None:
    """Refuse a tenant principal any intent not about itself (see the module's docstring)."""
    if principal.role != "tenant":
        return
    for i, intent in enumerate(intents):
        kind = intent.get("kind") if isinstance(intent, dict) else None
        tenant = intent.get("tenant") if isinstance(intent, dict) else None
        if kind not in NAMED_TENANT_KINDS:
            raise Forbidden(
                f"{principal} may not ask {kind!r} (intent {i}): a tenant asks only about intents that "
                "name their tenant"
            )
        if tenant != principal.name:
            raise Forbidden(f"{principal} may ask only about tenant {principal.name!r}, not {tenant!r}")


def require_credentials(what: str, host: str, tokens: object, token_option: str) -> None:
    """Refuse a decision front (`what`, e.g. `--listen 0.0.0.0:50051`) on `host` off loopback
    without a token file (`tokens` None): anyone who could reach it could ask, and would be
    recorded as whoever their intent says. The same rule as plaintext (pdp/net/listen.py), but
    `--insecure` does not lift it: a private network is no reason to let anyone ask as anyone."""
    if tokens is None and not is_loopback(host):
        raise ListenError(
            f"{what} is not loopback: give {token_option} (a file of 'PRINCIPAL TOKEN' lines, mode "
            "0600) so that callers authenticate; without one only loopback is served"
        )

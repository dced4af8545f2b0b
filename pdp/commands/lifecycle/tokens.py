"""`pdp lifecycle` options and commands for credentials: the worker's admin token and token
lifetimes, and `token whoami|list|rotate|revoke` against a running worker."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pdp.lifecycle.bearer_tokens import (
    ADMIN_TOKEN_ENV,
    DEFAULT_ADMIN_TTL,
    DEFAULT_METRICS_TTL,
    DEFAULT_TENANT_TTL,
    MIN_ADMIN_TOKEN_BITS,
    MIN_ADMIN_TOKEN_CHARS,
    parse_duration,
)

if TYPE_CHECKING:
    from pdp.lifecycle.storage.credentials import TokenPolicy

WORKER_CREDENTIALS = f"""\
admin credential (required):
  The worker refuses to start without one. Set {ADMIN_TOKEN_ENV} (or give --admin-token-file)
  to a random token of at least {MIN_ADMIN_TOKEN_CHARS} characters and {MIN_ADMIN_TOKEN_BITS} bits, e.g.
    export {ADMIN_TOKEN_ENV}=$(openssl rand -hex 32)
  It becomes the only admin token: admin tokens of earlier starts are revoked, so starting with a
  new one rotates it. A token revoked or expired before is refused. Clients send it as
  `Authorization: Bearer <token>` (pdp lifecycle ... --token, or PDP_LIFECYCLE_TOKEN).

listening:
  Plaintext only on loopback; elsewhere give --tls-cert and --tls-key (clients trust the CA with
  SSL_CERT_FILE=ca.crt), or --insecure on a private network (logged as a warning).
"""

Request = Callable[..., int]
"""`request(args, method, path, json=None, params=None)`: one call to the worker, printed; the exit
status."""


def _duration(text: str) -> Any:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_worker_options(w: argparse.ArgumentParser) -> None:
    w.add_argument(
        "--admin-token-file",
        type=Path,
        help=f"read the admin token from this file (a mounted Secret) instead of ${ADMIN_TOKEN_ENV}",
    )
    w.add_argument(
        "--admin-token-ttl",
        type=_duration,
        default=DEFAULT_ADMIN_TTL,
        metavar="DURATION",
        help="lifetime of an admin token from its first use or rotation (default 30d; e.g. 12h, 7d)",
    )
    w.add_argument(
        "--tenant-token-ttl",
        type=_duration,
        default=DEFAULT_TENANT_TTL,
        metavar="DURATION",
        help="lifetime of a tenant token from its issue (default 90d)",
    )
    w.add_argument(
        "--metrics-token-ttl",
        type=_duration,
        default=DEFAULT_METRICS_TTL,
        metavar="DURATION",
        help="lifetime of a metrics token (Prometheus's, for /metrics/tenants) from its issue (default 30d)",
    )


def token_policy(args: argparse.Namespace) -> TokenPolicy:
    from pdp.lifecycle.storage.credentials import TokenPolicy  # sqlalchemy: only when the worker starts

    return TokenPolicy(
        admin_ttl=args.admin_token_ttl, tenant_ttl=args.tenant_token_ttl, metrics_ttl=args.metrics_token_ttl
    )


def _base(args: argparse.Namespace) -> str:
    if args.tenant:
        return f"/v1/tenants/{args.tenant}/tokens"
    return "/v1/admin/metrics-tokens" if args.metrics else "/v1/admin/tokens"


def add_token_parsers(
    lsub: Any, client: Callable[[argparse.ArgumentParser], argparse.ArgumentParser], request: Request
) -> None:
    tok = lsub.add_parser("token", help="who am I; list, rotate and revoke admin, tenant and metrics tokens")
    tsub = tok.add_subparsers(dest="token_command", required=True)

    def holder(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        group = sp.add_mutually_exclusive_group(required=True)
        group.add_argument("--tenant", help="a tenant's tokens (the admin, or that tenant's own token)")
        group.add_argument("--admin", action="store_true", help="the admin tokens (admin token only)")
        group.add_argument(
            "--metrics",
            action="store_true",
            help="the metrics tokens, which read GET /metrics/tenants only (admin token only)",
        )
        return client(sp)

    client(tsub.add_parser("whoami", help="the caller's role, tenant, token id and expiry")).set_defaults(
        func=lambda a: request(a, "GET", "/v1/whoami")
    )
    holder(tsub.add_parser("list", help="tokens with expiry and revocation (never a token)")).set_defaults(
        func=lambda a: request(a, "GET", _base(a))
    )
    rot = holder(
        tsub.add_parser(
            "rotate", help="issue a new token (printed once) and revoke the holder's earlier ones now"
        )
    )
    rot.add_argument("--ttl", type=_duration, help="shorter lifetime than the worker's default, e.g. 7d")
    rot.set_defaults(
        func=lambda a: request(
            a, "POST", _base(a), json={"ttl_seconds": int(a.ttl.total_seconds()) if a.ttl else None}
        )
    )
    rev = holder(tsub.add_parser("revoke", help="revoke one token by its id (tok_...)"))
    rev.add_argument("token_id")
    rev.add_argument("--reason", default="")
    rev.set_defaults(
        func=lambda a: request(a, "POST", f"{_base(a)}/{a.token_id}/revoke", json={"reason": a.reason})
    )

"""Bearer credentials of the product API: admin and tenant tokens that expire, rotate and can be
revoked, each change audited.

- Every token has an expiry (TokenPolicy: admin 30 days, tenant 90 days by default); an expired
  or revoked token is refused on its next request. Rows are kept, so a token that ended can
  never become valid again.
- Rotating issues a new token and revokes the earlier ones of the same holder (a tenant, or the
  admin) in the same transaction: the old token stops working at once.
- The worker's start makes the admin token it was given the only admin credential
  (`admit_admin`): earlier admin tokens are revoked, and a token revoked or expired before is
  refused, so restarting with a new `PDP_LIFECYCLE_ADMIN_TOKEN` is a rotation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from pdp.lifecycle.bearer_tokens import (
    DEFAULT_ADMIN_TTL,
    DEFAULT_METRICS_TTL,
    DEFAULT_TENANT_TTL,
    HOW_TO_MAKE_ONE,
    Principal,
    new_token,
    new_token_id,
    token_hash,
)
from pdp.lifecycle.storage import audit
from pdp.lifecycle.storage.db import Database

ADMIN, TENANT, METRICS = "admin", "tenant", "metrics"
SIGN_IN_ROLES = (ADMIN, TENANT)
"""The roles that may call the API and sign in to the console. A metrics token (Prometheus's, for
`GET /metrics/tenants`) is refused everywhere it is not asked for by name, so no route can
mistake it for a tenant without a tenant."""


@dataclass(frozen=True)
class TokenPolicy:
    admin_ttl: timedelta = DEFAULT_ADMIN_TTL
    tenant_ttl: timedelta = DEFAULT_TENANT_TTL
    metrics_ttl: timedelta = DEFAULT_METRICS_TTL

    def ttl(self, role: str) -> timedelta:
        return {ADMIN: self.admin_ttl, METRICS: self.metrics_ttl}.get(role, self.tenant_ttl)


@dataclass(frozen=True)
class Issued:
    """A new token: shown once to whoever asked, then only its hash exists."""

    token: str
    token_id: str
    role: str
    tenant: str | None
    expires_at: str

    def as_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "token_id": self.token_id,
            "role": self.role,
            "tenant": self.tenant,
            "expires_at": self.expires_at,
        }


class Unauthenticated(Exception):
    """The bearer token is not (or no longer) valid; the message says which, for its holder."""


class WrongRole(Unauthenticated):
    """A valid token of a role the call does not take (a metrics token anywhere but its one
    route): a 403 from the API, a refused sign-in from the console."""


class CredentialError(Exception):
    """The admin credential the worker was started with cannot be used; one line saying why and
    what to do."""


class LastAdminToken(Exception):
    """Revoking this token would leave no admin credential at all."""


def _now() -> datetime:
    return datetime.now(UTC)


_COLUMNS = "id, role, tenant, created_at, created_by, expires_at, revoked_at, revoked_reason"
_KEYS = (
    "token_id",
    "role",
    "tenant",
    "created_at",
    "created_by",
    "expires_at",
    "revoked_at",
    "revoked_reason",
)


def _holder(role: str, tenant: str | None) -> tuple[str, dict[str, Any]]:
    """SQL condition and parameters selecting the tokens of the admin or of one tenant (written
    out for NULL: PostgreSQL cannot type a parameter only compared with IS NULL)."""
    if tenant is None:
        return "role = :r AND tenant IS NULL", {"r": role}
    return "role = :r AND tenant = :t", {"r": role, "t": tenant}


def _row(row: Any) -> dict[str, Any]:
    out = dict(zip(_KEYS, row, strict=True))
    out["active"] = out["revoked_at"] is None and datetime.fromisoformat(out["expires_at"]) > _now()
    return out


class Credentials:
    def __init__(self, db: Database, policy: TokenPolicy | None = None) -> None:
        self.db = db
        self.policy = policy or TokenPolicy()

    # checking ------------------------------------------------------------------------------
    def authenticate(self, token: str, roles: tuple[str, ...] = SIGN_IN_ROLES) -> Principal:
        """Who holds `token`, while it is valid and of one of `roles`."""
        return self._valid("token_hash", token_hash(token), roles)

    def authenticate_id(self, token_id: str, roles: tuple[str, ...] = SIGN_IN_ROLES) -> Principal:
        """Who holds the token named `token_id`, while it is valid: for whoever keeps the id of a
        token it was shown (the console's sessions), never the token. The same refusals as
        `authenticate`, so a rotation or revocation ends that holder at once too."""
        return self._valid("id", token_id, roles)

    def _valid(self, column: Literal["token_hash", "id"], value: str, roles: tuple[str, ...]) -> Principal:
        with self.db.read() as conn:
            row = conn.execute(
                sa.text(f"SELECT {_COLUMNS} FROM lc_credentials WHERE {column} = :v"), {"v": value}
            ).first()
        if row is None:
            raise Unauthenticated("a valid bearer token is required")
        found = _row(row)
        if found["revoked_at"] is not None:
            raise Unauthenticated(
                f"the bearer token {found['token_id']} was revoked ({found['revoked_reason']})"
            )
        if not found["active"]:
            raise Unauthenticated(f"the bearer token {found['token_id']} expired at {found['expires_at']}")
        if found["role"] not in roles:
            raise WrongRole(
                f"the bearer token {found['token_id']} is a {found['role']} token: "
                + ("it reads GET /metrics/tenants only" if found["role"] == METRICS else "not accepted here")
            )
        return Principal(found["role"], found["tenant"], found["token_id"], found["expires_at"])

    def tokens(self, role: str, tenant: str | None = None) -> list[dict[str, Any]]:
        """The tokens of the admin or of one tenant, newest first, without any hash."""
        where, params = _holder(role, tenant)
        with self.db.read() as conn:
            rows = conn.execute(
                sa.text(f"SELECT {_COLUMNS} FROM lc_credentials WHERE {where} ORDER BY created_at DESC"),
                params,
            ).all()
        return [_row(r) for r in rows]

    def token(self, token_id: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.execute(
                sa.text(f"SELECT {_COLUMNS} FROM lc_credentials WHERE id = :i"), {"i": token_id}
            ).first()
        return None if row is None else _row(row)

    # changing ------------------------------------------------------------------------------
    def rotate(self, role: str, tenant: str | None, *, actor: str, ttl: timedelta | None = None) -> Issued:
        """A new token for the admin (tenant None) or a tenant; the holder's earlier tokens are
        revoked in the same transaction. `ttl` may shorten the policy's lifetime, never extend it."""
        limit = self.policy.ttl(role)
        if ttl is not None and not timedelta(0) < ttl <= limit:
            raise ValueError(
                f"ttl_seconds: {ttl.total_seconds():.0f} is outside 1..{limit.total_seconds():.0f} "
                f"(the {role} token lifetime)"
            )
        token = new_token()
        with self.db.write() as conn:
            issued = self._insert(conn, token, role, tenant, actor=actor, ttl=ttl or limit)
            where, params = _holder(role, tenant)
            self._revoke_where(
                conn,
                f"{where} AND id <> :keep",
                {**params, "keep": issued.token_id},
                actor=actor,
                reason=f"rotated by {actor}",
            )
        return issued

    def revoke(self, token_id: str, *, actor: str, reason: str = "") -> bool:
        """Revoke one token; False when it was no longer active. LastAdminToken when it is the only
        active admin token (rotate it instead: a worker without one is locked)."""
        with self.db.write() as conn:
            row = conn.execute(
                sa.text("SELECT role FROM lc_credentials WHERE id = :i AND revoked_at IS NULL"),
                {"i": token_id},
            ).first()
            if row is None:
                return False
            if row[0] == ADMIN and not any(
                t["active"] and t["token_id"] != token_id for t in self._admin_rows(conn)
            ):
                raise LastAdminToken(
                    f"{token_id} is the only admin token; revoking it would lock everyone out: "
                    "rotate it instead (POST /v1/admin/tokens)"
                )
            revoked = self._revoke_where(
                conn, "id = :i", {"i": token_id}, actor=actor, reason=reason or f"revoked by {actor}"
            )
        return revoked > 0

    def revoke_tenant(self, tenant: str, *, actor: str, reason: str, **links: str) -> int:
        """Revoke every token of a tenant (offboarding: `links` are its workflow and decision);
        how many were not revoked yet."""
        with self.db.write() as conn:
            return self._revoke_where(
                conn, "role = :r AND tenant = :t", {"r": TENANT, "t": tenant}, actor=actor, reason=reason,
                **links,
            )  # fmt: skip

    def issue_tenant(self, tenant: str, *, actor: str) -> Issued:
        """The first token of a new tenant."""
        with self.db.write() as conn:
            return self._insert(conn, new_token(), TENANT, tenant, actor=actor, ttl=self.policy.tenant_ttl)

    def admit_admin(self, token: str, *, source: str) -> str:
        """At the worker's start: `token` becomes the only admin credential. A new token is
        registered and every earlier admin token revoked; a token that was revoked or expired is
        refused (CredentialError), so a rotated-out token never comes back. Returns its id."""
        digest = token_hash(token)
        with self.db.write() as conn:
            row = conn.execute(
                sa.text(f"SELECT {_COLUMNS} FROM lc_credentials WHERE token_hash = :h"), {"h": digest}
            ).first()
            if row is None:
                token_id = self._insert(
                    conn, token, ADMIN, None, actor=f"worker start ({source})", ttl=self.policy.admin_ttl
                ).token_id
            else:
                found = _row(row)
                if found["role"] != ADMIN:
                    raise CredentialError(f"{source} is a tenant's token, not an admin token")
                if found["revoked_at"] is not None:
                    raise CredentialError(
                        f"{source} holds admin token {found['token_id']}, revoked at "
                        f"{found['revoked_at']} ({found['revoked_reason']}): give the current admin "
                        f"token or a new one ({HOW_TO_MAKE_ONE})"
                    )
                if not found["active"]:
                    raise CredentialError(
                        f"{source} holds admin token {found['token_id']}, which expired at "
                        f"{found['expires_at']}: give a new one ({HOW_TO_MAKE_ONE})"
                    )
                token_id = found["token_id"]
            self._revoke_where(
                conn,
                "role = :r AND id <> :keep",
                {"r": ADMIN, "keep": token_id},
                actor=f"worker start ({source})",
                reason=f"superseded: the worker started with admin token {token_id} from {source}",
            )
        return token_id

    def migrate_legacy(self) -> None:
        """Tokens of the earlier table (hash, role, tenant; no expiry) move here: tenant tokens get
        the tenant lifetime from now, admin tokens are dropped (the worker's start admits the
        current one). Audited; the old table is removed."""
        if not sa.inspect(self.db.engine).has_table("lc_tokens"):
            return
        with self.db.write() as conn:
            rows = conn.execute(sa.text("SELECT token_hash, role, tenant FROM lc_tokens")).all()
            expires = (_now() + self.policy.tenant_ttl).isoformat()
            moved = 0
            for digest, role, tenant in rows:
                if role != TENANT:
                    continue
                conn.execute(
                    sa.text(
                        "INSERT INTO lc_credentials (id, token_hash, role, tenant, created_at, created_by, "
                        "expires_at) VALUES (:i, :h, :r, :t, :c, 'migration', :e)"
                    ),
                    {
                        "i": new_token_id(),
                        "h": digest,
                        "r": TENANT,
                        "t": tenant,
                        "c": _now().isoformat(),
                        "e": expires,
                    },
                )
                moved += 1
            conn.execute(sa.text("DROP TABLE lc_tokens"))
            audit.append(
                conn,
                f"credentials:migrated:{_now().isoformat()}",
                event="credentials.migrated",
                tenant="",
                detail={
                    "tenant_tokens": moved,
                    "admin_tokens_dropped": len(rows) - moved,
                    "expires_at": expires,
                },
            )

    # internals -----------------------------------------------------------------------------
    @staticmethod
    def _admin_rows(conn: sa.Connection) -> list[dict[str, Any]]:
        rows = conn.execute(
            sa.text(f"SELECT {_COLUMNS} FROM lc_credentials WHERE role = :r"), {"r": ADMIN}
        ).all()
        return [_row(r) for r in rows]

    @staticmethod
    def _insert(
        conn: sa.Connection, token: str, role: str, tenant: str | None, *, actor: str, ttl: timedelta
    ) -> Issued:
        now = _now()
        issued = Issued(token, new_token_id(), role, tenant, (now + ttl).isoformat())
        conn.execute(
            sa.text(
                "INSERT INTO lc_credentials (id, token_hash, role, tenant, created_at, created_by, "
                "expires_at) VALUES (:i, :h, :r, :t, :c, :b, :e)"
            ),
            {
                "i": issued.token_id,
                "h": token_hash(token),
                "r": role,
                "t": tenant,
                "c": now.isoformat(),
                "b": actor,
                "e": issued.expires_at,
            },
        )
        audit.append(
            conn,
            f"credential:{issued.token_id}:issued",
            event="credential.issued",
            tenant=tenant or "",
            actor=actor,
            detail={"token_id": issued.token_id, "role": role, "expires_at": issued.expires_at},
        )
        return issued

    @staticmethod
    def _revoke_where(
        conn: sa.Connection, where: str, params: Mapping[str, Any], *, actor: str, reason: str, **links: str
    ) -> int:
        """Revoke the active tokens matching `where`, one audit record each; how many."""
        rows = conn.execute(
            sa.text(f"SELECT {_COLUMNS} FROM lc_credentials WHERE revoked_at IS NULL AND {where}"),
            dict(params),
        ).all()
        now = _now().isoformat()
        for row in rows:
            found = _row(row)
            conn.execute(
                sa.text("UPDATE lc_credentials SET revoked_at = :at, revoked_reason = :why WHERE id = :i"),
                {"at": now, "why": reason, "i": found["token_id"]},
            )
            audit.append(
                conn,
                f"credential:{found['token_id']}:revoked",
                event="credential.revoked",
                tenant=found["tenant"] or "",
                actor=actor,
                detail={"token_id": found["token_id"], "role": found["role"], "reason": reason},
                **links,
            )
        return len(rows)

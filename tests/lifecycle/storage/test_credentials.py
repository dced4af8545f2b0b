"""The credential store on real databases (SQLite, and PostgreSQL when PDP_TEST_POSTGRES_URL is
set): expiry, rotation, revocation, the admin token's admission at start, the strength rule, and
migration of the earlier token table."""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from pdp.lifecycle.bearer_tokens import (
    admin_token_problem,
    estimated_bits,
    new_token,
    parse_duration,
    token_hash,
)
from pdp.lifecycle.storage import audit, credentials
from pdp.lifecycle.storage.credentials import (
    CredentialError,
    Credentials,
    LastAdminToken,
    TokenPolicy,
    Unauthenticated,
    WrongRole,
)
from pdp.lifecycle.storage.db import Database


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(credentials, "_now", c)
    return c


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'lc.sqlite'}"
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url").replace("postgresql://", "postgresql+psycopg://", 1)
    database = Database(url)
    yield database
    database.close()  # before pg_url's teardown drops the database: no pooled session left on it


def strong() -> str:
    return secrets.token_hex(32)


def test_stored_is_the_hash_never_the_token(db: Database) -> None:
    creds = Credentials(db)
    admin = strong()
    creds.admit_admin(admin, source="env")
    issued = creds.issue_tenant("acme", actor="admin")
    with db.read() as conn:
        dump = "\n".join(str(tuple(r)) for r in conn.execute(sa.text("SELECT * FROM lc_credentials")))
    assert admin not in dump and issued.token not in dump
    assert token_hash(admin) in dump and token_hash(issued.token) in dump


def test_issued_tokens_can_be_given_to_a_cli_option() -> None:
    # `pdp waste --reclaim --token T` failed to parse ("expected one argument") whenever T began
    # with "-", one token in 64 of secrets.token_urlsafe.
    tokens = [new_token() for _ in range(2000)]
    assert not [t for t in tokens if t.startswith("-")]
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--token")
    assert all(parser.parse_args(["--token", t]).token == t for t in tokens)
    assert len(set(tokens)) == len(tokens) and min(len(t) for t in tokens) >= 43


def test_a_new_admin_token_at_start_revokes_the_earlier_one(db: Database) -> None:
    creds = Credentials(db)
    old, new = strong(), strong()
    old_id = creds.admit_admin(old, source="env")
    assert creds.authenticate(old).is_admin
    assert creds.admit_admin(old, source="env") == old_id  # the same token again: nothing changes
    creds.admit_admin(new, source="env")
    with pytest.raises(Unauthenticated, match=f"{old_id} was revoked"):
        creds.authenticate(old)
    assert creds.authenticate(new).is_admin
    # The rotated-out token never comes back, not even by restarting with it.
    with pytest.raises(CredentialError, match=f"holds admin token {old_id}, revoked at .*superseded"):
        creds.admit_admin(old, source="env")
    assert creds.authenticate(new).is_admin


def test_tokens_expire(db: Database, clock: Clock) -> None:
    creds = Credentials(db, TokenPolicy(admin_ttl=timedelta(hours=1), tenant_ttl=timedelta(hours=2)))
    admin = strong()
    creds.admit_admin(admin, source="env")
    tenant = creds.issue_tenant("acme", actor="admin")
    clock.now += timedelta(minutes=59)
    assert creds.authenticate(admin).is_admin and creds.authenticate(tenant.token).tenant == "acme"
    clock.now += timedelta(minutes=2)
    with pytest.raises(Unauthenticated, match="expired at"):
        creds.authenticate(admin)
    assert creds.authenticate(tenant.token).tenant == "acme"
    with pytest.raises(CredentialError, match=r"which expired at .*give a new one"):
        creds.admit_admin(admin, source="env")  # an expired admin token does not start a worker
    clock.now += timedelta(hours=1)
    with pytest.raises(Unauthenticated, match="expired at"):
        creds.authenticate(tenant.token)


def test_rotation_revokes_the_holders_earlier_tokens_at_once(db: Database) -> None:
    creds = Credentials(db)
    creds.admit_admin(strong(), source="env")
    first = creds.issue_tenant("acme", actor="admin")
    other = creds.issue_tenant("globex", actor="admin")
    second = creds.rotate("tenant", "acme", actor="tenant:acme")
    with pytest.raises(Unauthenticated, match="revoked \\(rotated by tenant:acme\\)"):
        creds.authenticate(first.token)
    assert creds.authenticate(second.token).tenant == "acme"
    assert creds.authenticate(other.token).tenant == "globex"  # another tenant's token is untouched
    listed = creds.tokens("tenant", "acme")
    assert [t["token_id"] for t in listed if t["active"]] == [second.token_id]
    assert all("hash" not in key for t in listed for key in t)


def test_a_metrics_token_is_taken_only_where_asked_for_by_name(db: Database, clock: Clock) -> None:
    creds = Credentials(db, TokenPolicy(metrics_ttl=timedelta(hours=3)))
    creds.admit_admin(strong(), source="env")
    first = creds.rotate("metrics", None, actor="admin")
    assert first.role == "metrics" and first.tenant is None
    # Not an admin, not a tenant: the API's and the console's checks refuse it ...
    refusal = f"{first.token_id} is a metrics token: it reads GET /metrics/tenants only"
    with pytest.raises(WrongRole, match=refusal):
        creds.authenticate(first.token)
    with pytest.raises(WrongRole, match="metrics token"):
        creds.authenticate_id(first.token_id)  # a console session naming it
    # ... and only the route that names its role takes it.
    who = creds.authenticate(first.token, ("admin", "metrics"))
    assert who.role == "metrics" and not who.is_admin and not who.may_act_on("acme")
    second = creds.rotate("metrics", None, actor="admin")
    with pytest.raises(Unauthenticated, match="revoked"):
        creds.authenticate(first.token, ("admin", "metrics"))
    assert [t["token_id"] for t in creds.tokens("metrics") if t["active"]] == [second.token_id]
    assert creds.revoke(second.token_id, actor="admin")  # not the last admin token: no lock-out
    clock.now += timedelta(hours=3, seconds=1)
    third = creds.rotate("metrics", None, actor="admin")
    assert datetime.fromisoformat(third.expires_at) - clock.now <= timedelta(hours=3)


def test_rotation_may_shorten_a_lifetime_never_extend_it(db: Database) -> None:
    creds = Credentials(db, TokenPolicy(tenant_ttl=timedelta(days=1)))
    short = creds.rotate("tenant", "acme", actor="admin", ttl=timedelta(hours=1))
    assert datetime.fromisoformat(short.expires_at) - datetime.now(UTC) <= timedelta(hours=1)
    with pytest.raises(ValueError, match=r"ttl_seconds: 172800 is outside 1\.\.86400"):
        creds.rotate("tenant", "acme", actor="admin", ttl=timedelta(days=2))


def test_revocation_and_the_last_admin_token(db: Database) -> None:
    creds = Credentials(db)
    admin = strong()
    admin_id = creds.admit_admin(admin, source="env")
    with pytest.raises(LastAdminToken, match="only admin token"):
        creds.revoke(admin_id, actor="admin")
    assert creds.authenticate(admin).is_admin
    rotated = creds.rotate("admin", None, actor="admin")
    with pytest.raises(Unauthenticated):
        creds.authenticate(admin)
    tenant = creds.issue_tenant("acme", actor="admin")
    assert creds.revoke(tenant.token_id, actor="admin", reason="leaked")
    assert not creds.revoke(tenant.token_id, actor="admin")  # already revoked
    with pytest.raises(Unauthenticated, match="revoked \\(leaked\\)"):
        creds.authenticate(tenant.token)
    assert creds.revoke_tenant("acme", actor="system", reason="offboarded") == 0
    assert creds.authenticate(rotated.token).is_admin


def test_every_change_is_audited_and_the_chain_holds(db: Database) -> None:
    creds = Credentials(db)
    creds.admit_admin(strong(), source="env")
    t = creds.issue_tenant("acme", actor="admin")
    creds.rotate("tenant", "acme", actor="tenant:acme")
    creds.admit_admin(strong(), source="env")
    events = [(r["event"], r["detail"].get("role"), r["actor"]) for r in audit.records(db)]
    assert events == [
        ("credential.issued", "admin", "worker start (env)"),
        ("credential.issued", "tenant", "admin"),
        ("credential.issued", "tenant", "tenant:acme"),
        ("credential.revoked", "tenant", "tenant:acme"),
        ("credential.issued", "admin", "worker start (env)"),
        ("credential.revoked", "admin", "worker start (env)"),
    ]
    assert t.token not in "".join(str(r) for r in audit.records(db))
    assert audit.verify(db) == []


def test_tokens_of_the_earlier_table_are_migrated_with_an_expiry(db: Database) -> None:
    tenant_token, admin_token = strong(), strong()
    with db.write() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE lc_tokens (token_hash VARCHAR(64) PRIMARY KEY, role VARCHAR(16) NOT NULL, "
                "tenant VARCHAR(128), created_at VARCHAR(64) NOT NULL)"
            )
        )
        for token, role, tenant in ((tenant_token, "tenant", "acme"), (admin_token, "admin", None)):
            conn.execute(
                sa.text("INSERT INTO lc_tokens VALUES (:h, :r, :t, 'then')"),
                {"h": token_hash(token), "r": role, "t": tenant},
            )
    creds = Credentials(db)
    creds.migrate_legacy()
    creds.migrate_legacy()  # idempotent: the old table is gone
    assert creds.authenticate(tenant_token).tenant == "acme"
    assert creds.tokens("tenant", "acme")[0]["expires_at"]
    with pytest.raises(Unauthenticated):
        creds.authenticate(admin_token)  # admin tokens are not carried over: the start admits one
    assert not sa.inspect(db.engine).has_table("lc_tokens")
    (record,) = audit.records(db)
    assert record["event"] == "credentials.migrated"
    assert record["detail"]["tenant_tokens"] == 1 and record["detail"]["admin_tokens_dropped"] == 1


@pytest.mark.parametrize(
    "token",
    [
        "changeme",
        "correct horse battery staple",  # 28 characters
        "a" * 64,
        "ab" * 32,
        "password1234password1234password",
        "0123012301230123012301230123012301230123",
    ],
)
def test_weak_admin_tokens_are_named_weak(token: str) -> None:
    problem = admin_token_problem(token)
    assert problem is not None
    assert f"{len(token)} characters" in problem and "openssl rand -hex 32" in problem


def test_generated_tokens_are_strong() -> None:
    for _ in range(2000):
        for token in (secrets.token_hex(32), secrets.token_hex(24), secrets.token_urlsafe(32)):
            assert admin_token_problem(token) is None, (token, estimated_bits(token))


def test_durations() -> None:
    assert parse_duration("90d") == timedelta(days=90)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("3600") == timedelta(hours=1)
    for bad in ("0", "-1d", "1w", "d", ""):
        with pytest.raises(ValueError, match="is not a positive duration"):
            parse_duration(bad)

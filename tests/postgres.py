"""Scratch PostgreSQL databases for the tests that run when PDP_TEST_POSTGRES_URL names a role that
may create databases (.ci/run starts Debian's cluster and sets it): one database per test, dropped
after it.

The drop does not use `DROP DATABASE ... WITH (FORCE)`: FORCE terminates every other backend on the
database and fails outright when the role may not terminate one of them ("must be a member of the
role whose process is being terminated or member of pg_signal_backend"), which is the case for an
autovacuum worker or another role's session. A plain DROP DATABASE tells autovacuum workers to exit
and waits up to 5 seconds for other backends (PostgreSQL's CountOtherDBBackends); the role's own
leftover sessions (a killed worker's, a pool not disposed) are terminated first, which a role may
always do to its own backends. Another role's session that outlives the bounded retry fails the
teardown with the sessions named."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

URL = os.environ.get("PDP_TEST_POSTGRES_URL", "")
SKIP_REASON = "PDP_TEST_POSTGRES_URL is not set (postgresql://user:pw@host/db of a role with CREATEDB)"
requires_postgres = pytest.mark.skipif(not URL, reason=SKIP_REASON)


def libpq(url: str) -> str:
    """A libpq URL from a SQLAlchemy-style one (postgresql+psycopg://)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def database_url(name: str, server: str = URL) -> str:
    """The URL of database `name` on the server (and as the role) of `server`."""
    return libpq(server).rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def scratch_database(prefix: str = "pdp_test", server: str = URL) -> Iterator[str]:
    """A new, empty database owned by the server URL's role; its URL, then dropped."""
    if not server:
        pytest.skip(SKIP_REASON)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq(server), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(name, server)
    finally:
        drop_database(name, server)


def drop_database(name: str, server: str = URL, timeout: float = 60.0) -> None:
    """Drops database `name` (if it exists) from the server URL's role, which owns it: no new
    connections, the role's own sessions on it terminated, then DROP DATABASE retried on
    'being accessed by other users' until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(libpq(server), autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            return
        admin.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
        while True:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND usename = current_user AND pid <> pg_backend_pid()",
                (name,),
            )
            try:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
                return
            except psycopg.errors.ObjectInUse as in_use:  # the server waited 5 s for the others
                if time.monotonic() >= deadline:
                    sessions = admin.execute(
                        "SELECT pid, usename, backend_type, application_name, state"
                        " FROM pg_stat_activity WHERE datname = %s",
                        (name,),
                    ).fetchall()
                    raise RuntimeError(
                        f"database {name!r} still in use after {timeout:.0f} s by {sessions}"
                    ) from in_use
                time.sleep(0.2)

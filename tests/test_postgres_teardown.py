"""The scratch databases' teardown (tests/postgres.py) on a real PostgreSQL: it drops a database
that the test role's own leftover sessions or another role's passing session still use, where
`DROP DATABASE ... WITH (FORCE)` fails, and names the sessions when one outlives its bound.

Another role's session is a superuser's psql (CI runs as root beside Debian's cluster, whose
`postgres` role connects by peer authentication); an autovacuum worker on the database, which made
a CI teardown fail, is refused to FORCE by the same permission check."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from tests.postgres import URL, drop_database, libpq, requires_postgres, scratch_database

pytestmark = requires_postgres


def _exists(name: str) -> bool:
    with psycopg.connect(libpq(URL), autocommit=True) as admin:
        return admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def _sessions(name: str, role: str) -> int:
    with psycopg.connect(libpq(URL), autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND usename = %s", (name, role)
        ).fetchone()
    return int(row[0]) if row else 0


def _superuser_psql_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("su") or not shutil.which("psql"):
        return False
    probe = subprocess.run(
        ["su", "postgres", "-c", "psql -qtAc 'SELECT 1'"], capture_output=True, text=True, timeout=30
    )
    return probe.returncode == 0 and probe.stdout.strip() == "1"


@contextmanager
def superuser_session(name: str, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """The `postgres` superuser connected to database `name` for `seconds`, by psql over the local
    socket; yields once the server lists the session."""
    if not _superuser_psql_available():
        pytest.skip("needs root and Debian's cluster (its postgres role reached by peer authentication)")
    session = subprocess.Popen(
        ["su", "postgres", "-c", f"psql -qd {name} -c 'SELECT pg_sleep({seconds})'"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while _sessions(name, "postgres") == 0:
            assert session.poll() is None, session.communicate()
            assert time.monotonic() < deadline, "the superuser session never showed in pg_stat_activity"
            time.sleep(0.05)
        yield session
    finally:
        session.wait(timeout=seconds + 60)


def test_the_roles_own_leftover_sessions_do_not_keep_the_database() -> None:
    with scratch_database("teardown") as url:
        name = url.rsplit("/", 1)[1]
        idle = psycopg.connect(url)  # a pool never disposed
        in_transaction = psycopg.connect(url)
        in_transaction.execute("CREATE TABLE t (n int)")  # left open: idle in transaction
        assert _sessions(name, psycopg.conninfo.conninfo_to_dict(url)["user"]) == 2
    assert not _exists(name)
    for conn in (idle, in_transaction):
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        conn.close()


def test_another_roles_passing_session_delays_the_drop_where_force_fails() -> None:
    with scratch_database("teardown") as url:
        name = url.rsplit("/", 1)[1]
        with superuser_session(name, seconds=3):
            before = psycopg.connect(libpq(URL), autocommit=True)  # the teardown this replaced
            with before, pytest.raises(psycopg.errors.InsufficientPrivilege):
                before.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            assert _exists(name)
            started = time.monotonic()
            drop_database(name)  # waits for the session's end, within its bound
            assert not _exists(name)
            assert time.monotonic() - started < 60


def test_a_session_that_outlives_the_bound_is_named() -> None:
    with scratch_database("teardown") as url:
        name = url.rsplit("/", 1)[1]
        with superuser_session(name, seconds=8):
            with pytest.raises(RuntimeError, match=rf"database '{name}' still in use .*'postgres'"):
                drop_database(name, timeout=0.1)  # one attempt: the server waits 5 s for others
            assert _exists(name)
    assert not _exists(name)  # scratch_database's own drop, once the session ended

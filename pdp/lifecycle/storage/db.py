"""The lifecycle database: SQLite (embedded default) or PostgreSQL, through SQLAlchemy Core.

Only portable SQL is used, so one schema serves both. SQLite writers are serialized by a
process lock, because SQLite refuses to upgrade a read transaction to a write one under load.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from pdp.integrity.files import private_database

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS lc_tenants (
        name VARCHAR(128) PRIMARY KEY, state VARCHAR(32) NOT NULL, policy TEXT NOT NULL,
        workflow_id VARCHAR(256), updated_at VARCHAR(64) NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS lc_deployments (
        tenant VARCHAR(128) NOT NULL, name VARCHAR(128) NOT NULL, state VARCHAR(32) NOT NULL,
        spec TEXT NOT NULL, updated_at VARCHAR(64) NOT NULL, PRIMARY KEY (tenant, name))""",
    # Bearer credentials (pdp/lifecycle/storage/credentials.py): the SHA-256 of each token, never the
    # token; rows stay after revocation or expiry, so a token that ended can never come back.
    """CREATE TABLE IF NOT EXISTS lc_credentials (
        id VARCHAR(32) PRIMARY KEY, token_hash VARCHAR(64) NOT NULL UNIQUE, role VARCHAR(16) NOT NULL,
        tenant VARCHAR(128), created_at VARCHAR(64) NOT NULL, created_by VARCHAR(256) NOT NULL,
        expires_at VARCHAR(64) NOT NULL, revoked_at VARCHAR(64), revoked_reason VARCHAR(256))""",
    """CREATE TABLE IF NOT EXISTS lc_approvals (
        id VARCHAR(256) PRIMARY KEY, tenant VARCHAR(128) NOT NULL, kind VARCHAR(64) NOT NULL,
        status VARCHAR(32) NOT NULL, decision TEXT NOT NULL, resolved_by VARCHAR(256),
        created_at VARCHAR(64) NOT NULL, updated_at VARCHAR(64) NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS lc_effects (
        seq INTEGER PRIMARY KEY, op VARCHAR(16) NOT NULL, kind VARCHAR(64) NOT NULL,
        namespace VARCHAR(128) NOT NULL, name VARCHAR(256) NOT NULL, body TEXT NOT NULL,
        at VARCHAR(64) NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS lc_audit (
        seq INTEGER PRIMARY KEY, event_key VARCHAR(512) NOT NULL UNIQUE, record TEXT NOT NULL,
        prev_hash VARCHAR(64) NOT NULL, hash VARCHAR(64) NOT NULL)""",
    # When each queued deployment joined the queue (FIFO within a tier); a row exists exactly while
    # the deployment is queued.
    """CREATE TABLE IF NOT EXISTS lc_queue (
        tenant VARCHAR(128) NOT NULL, name VARCHAR(128) NOT NULL, queued_at VARCHAR(64) NOT NULL,
        PRIMARY KEY (tenant, name))""",
    # GPUs per class as last reported by the scheduler (overrides the fleet inventory).
    """CREATE TABLE IF NOT EXISTS lc_capacity (
        gpu_class VARCHAR(64) PRIMARY KEY, gpus INTEGER NOT NULL, updated_at VARCHAR(64) NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS lc_workloads (
        tenant VARCHAR(128) NOT NULL, name VARCHAR(128) NOT NULL, record TEXT NOT NULL,
        updated_at VARCHAR(64) NOT NULL, PRIMARY KEY (tenant, name))""",
    """CREATE TABLE IF NOT EXISTS lc_certificates (
        tenant VARCHAR(128) PRIMARY KEY, document TEXT NOT NULL, digest VARCHAR(64) NOT NULL)""",
    # The signature block (algorithm, key id, value) of each certificate, written with it.
    """CREATE TABLE IF NOT EXISTS lc_certificate_signatures (
        tenant VARCHAR(128) PRIMARY KEY, signature TEXT NOT NULL)""",
    # Dedicated pools carved out of shared capacity (pdp/lifecycle/services/pools.py), the node each holds
    # (a node belongs to one pool), and each tenant's pool request while it waits for capacity.
    """CREATE TABLE IF NOT EXISTS lc_pools (
        name VARCHAR(128) PRIMARY KEY, tenant VARCHAR(128) NOT NULL, state VARCHAR(16) NOT NULL,
        record TEXT NOT NULL, workflow_id VARCHAR(256) NOT NULL, updated_at VARCHAR(64) NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS lc_pool_nodes (
        node VARCHAR(256) PRIMARY KEY, pool VARCHAR(128) NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS lc_pool_requests (
        tenant VARCHAR(128) PRIMARY KEY, workflow_id VARCHAR(256) NOT NULL,
        status VARCHAR(32) NOT NULL, reason TEXT NOT NULL, since VARCHAR(64) NOT NULL,
        updated_at VARCHAR(64) NOT NULL)""",
    # The clusters each tenant is realized in (a multi-cluster worker: pdp/lifecycle/clusters.py).
    """CREATE TABLE IF NOT EXISTS lc_tenant_clusters (
        tenant VARCHAR(128) NOT NULL, cluster VARCHAR(128) NOT NULL, PRIMARY KEY (tenant, cluster))""",
]


# Set on a connection by audit.append: the (seq, prev_hash, hash) of each audit record the
# transaction appended.
AUDIT_APPENDED = "gpupaas.audit_appended"
Appended = list[tuple[int, str, str]]


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            database = sa.engine.make_url(url).database
            if database and database != ":memory:":
                private_database(Path(database))  # 0600, before SQLite creates it 0644
        kwargs: dict[str, object] = {"connect_args": {"timeout": 30}} if self.sqlite else {}
        self.engine = sa.create_engine(url, **kwargs)
        if self.sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._write_lock = threading.Lock()
        # Run after the commit of each write transaction that appended audit records, with them
        # (the worker checkpoints them there: pdp/lifecycle/storage/anchor.py).
        self.after_audit_commit: Callable[[Appended], None] | None = None
        with self.write() as conn:
            for ddl in SCHEMA:
                conn.execute(sa.text(ddl))

    @contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """One write transaction (committed on success, rolled back on error)."""
        # SQLite: the hook runs inside the process lock too, so anchors follow commits in order.
        with self._write_lock if self.sqlite else contextlib.nullcontext():
            with self.engine.begin() as conn:
                try:
                    yield conn
                finally:
                    # info lives with the pooled DBAPI connection: never leave the flag behind
                    appended: Appended = conn.info.pop(AUDIT_APPENDED, [])
            if appended and self.after_audit_commit is not None:
                self.after_audit_commit(appended)

    @contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()

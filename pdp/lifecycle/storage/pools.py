"""The records of dedicated pools (pdp/lifecycle/services/pools.py): the pools carved out of shared
capacity (`lc_pools`), the node each holds (`lc_pool_nodes`: a node belongs to one pool, across
workers), and each tenant's pool request (`lc_pool_requests`: waiting for capacity, and why)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from pdp.lifecycle.storage import audit
from pdp.lifecycle.storage.common import now
from pdp.lifecycle.storage.db import Database

# records -----------------------------------------------------------------------------------------


class PoolRecords:
    """The carved pools (`lc_pools`), the nodes they hold (`lc_pool_nodes`: one pool per node) and
    each tenant's pool request (`lc_pool_requests`: waiting, and why)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def active(self, tenant: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT record FROM lc_pools WHERE state IN ('claimed', 'carved')"
        with self.db.read() as conn:
            rows = conn.execute(
                sa.text(sql + (" AND tenant = :t" if tenant else "") + " ORDER BY name"), {"t": tenant}
            ).all()
        return [json.loads(r[0]) for r in rows]

    def claim(self, carvings: list[dict[str, Any]], workflow_id: str) -> list[str]:
        """Claim the carvings' nodes in one transaction; the nodes another pool holds (nothing is
        claimed then). Claiming again what this workflow claimed is a no-op."""
        try:
            return self._claim(carvings, workflow_id)
        except sa.exc.IntegrityError:
            # PostgreSQL: a concurrent claim of the same node committed first (primary key).
            return sorted(n for c in carvings for n in c["nodes"])

    def _claim(self, carvings: list[dict[str, Any]], workflow_id: str) -> list[str]:
        with self.db.write() as conn:
            taken = []
            for c in carvings:
                for node in c["nodes"]:
                    owner = conn.execute(
                        sa.text("SELECT pool FROM lc_pool_nodes WHERE node = :n"), {"n": node}
                    ).scalar()
                    if owner is not None and owner != c["pool"]:
                        taken.append(node)
            if taken:
                return taken
            for c in carvings:
                record = {k: v for k, v in c.items() if k != "preempt_decision"}
                conn.execute(sa.text("DELETE FROM lc_pools WHERE name = :p"), {"p": c["pool"]})
                conn.execute(
                    sa.text(
                        "INSERT INTO lc_pools (name, tenant, state, record, workflow_id, updated_at) "
                        "VALUES (:p, :t, 'claimed', :r, :w, :u)"
                    ),
                    {"p": c["pool"], "t": c["tenant"], "r": json.dumps(record), "w": workflow_id, "u": now()},
                )
                conn.execute(sa.text("DELETE FROM lc_pool_nodes WHERE pool = :p"), {"p": c["pool"]})
                for node in c["nodes"]:
                    conn.execute(
                        sa.text("INSERT INTO lc_pool_nodes (node, pool) VALUES (:n, :p)"),
                        {"n": node, "p": c["pool"]},
                    )
        return []

    def set_state(
        self,
        pool: str,
        tenant: str,
        state: str,
        *,
        event_key: str,
        event: str,
        detail: Mapping[str, Any],
        **links: Any,
    ) -> None:
        with self.db.write() as conn:
            conn.execute(
                sa.text("UPDATE lc_pools SET state = :s, updated_at = :u WHERE name = :p"),
                {"s": state, "u": now(), "p": pool},
            )
            if state == "released":
                conn.execute(sa.text("DELETE FROM lc_pool_nodes WHERE pool = :p"), {"p": pool})
            audit.append(conn, event_key, event=event, tenant=tenant, detail=dict(detail), **links)

    def set_request(self, tenant: str, workflow_id: str, status: str, reason: str = "") -> None:
        with self.db.write() as conn:
            since = conn.execute(
                sa.text("SELECT since, status FROM lc_pool_requests WHERE tenant = :t"), {"t": tenant}
            ).first()
            conn.execute(sa.text("DELETE FROM lc_pool_requests WHERE tenant = :t"), {"t": tenant})
            conn.execute(
                sa.text(
                    "INSERT INTO lc_pool_requests (tenant, workflow_id, status, reason, since, updated_at) "
                    "VALUES (:t, :w, :s, :r, :since, :u)"
                ),
                {
                    "t": tenant,
                    "w": workflow_id,
                    "s": status,
                    "r": reason,
                    "since": since[0] if since is not None and since[1] == status else now(),
                    "u": now(),
                },
            )

    def requests(self, status: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT tenant, workflow_id, status, reason, since, updated_at FROM lc_pool_requests"
        with self.db.read() as conn:
            rows = conn.execute(
                sa.text(sql + (" WHERE status = :s" if status else "") + " ORDER BY tenant"), {"s": status}
            ).all()
        keys = ("tenant", "workflow_id", "status", "reason", "since", "updated_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]


def carvings_of(db: Database) -> list[dict[str, Any]]:
    """Every pool carved (or being carved): what the fleet of the bundle applies."""
    return PoolRecords(db).active()


def status(db: Database, tenant: str) -> dict[str, Any]:
    """What GET /v1/tenants/{t} adds: the tenant's carved pools, and its pool request (waiting for
    capacity, and why)."""
    records = PoolRecords(db)
    out: dict[str, Any] = {}
    carved = records.active(tenant)
    if carved:
        out["carved_pools"] = [
            {k: c[k] for k in ("pool", "cluster", "region", "gpu_class", "source_pool", "nodes")}
            for c in carved
        ]
    request = next((r for r in records.requests() if r["tenant"] == tenant), None)
    if request is not None:
        out["provisioning"] = {k: request[k] for k in ("status", "reason", "since", "workflow_id")}
    return out

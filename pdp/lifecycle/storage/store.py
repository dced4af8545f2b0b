"""The lifecycle store: tenants, deployments, tokens, approvals (pdp/lifecycle/storage/approvals.py)
and certificates.

Every state change goes through `transition`, which checks the state machine and appends the
audit record in the same transaction, so state and audit trail cannot disagree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from pdp.lifecycle.states import DEPLOYMENT, TENANT
from pdp.lifecycle.storage import audit
from pdp.lifecycle.storage.approvals import ApprovalStore
from pdp.lifecycle.storage.common import NotFound, now
from pdp.lifecycle.storage.credentials import Credentials, TokenPolicy
from pdp.lifecycle.storage.db import Database

__all__ = ["NotFound", "Store"]


class Store(ApprovalStore):
    def __init__(self, db: Database, token_policy: TokenPolicy | None = None) -> None:
        self.db = db
        self.credentials = Credentials(db, token_policy)

    # tenants -------------------------------------------------------------------------------
    def create_tenant(self, policy: Mapping[str, Any], workflow_id: str, actor: str) -> None:
        name = str(policy["name"])
        with self.db.write() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO lc_tenants (name, state, policy, workflow_id, updated_at) "
                    "VALUES (:n, :s, :p, :w, :t)"
                ),
                {"n": name, "s": TENANT.initial, "p": json.dumps(policy), "w": workflow_id, "t": now()},
            )
            audit.append(
                conn,
                f"tenant:{name}:created:{workflow_id}",
                event="tenant.created",
                tenant=name,
                actor=actor,
                workflow_id=workflow_id,
                # the request, recorded as it is accepted: the workflow decides it next
                detail={
                    "to": TENANT.initial,
                    "decision": "none: the request, before its workflow decides it",
                },
            )

    def tenant(self, name: str) -> dict[str, Any]:
        with self.db.read() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT name, state, policy, workflow_id, updated_at FROM lc_tenants WHERE name = :n"
                ),
                {"n": name},
            ).first()
        if row is None:
            raise NotFound(f"tenant {name!r} not found")
        return {
            "name": row[0],
            "state": row[1],
            "policy": json.loads(row[2]),
            "workflow_id": row[3],
            "updated_at": row[4],
        }

    def tenants(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            names = [r[0] for r in conn.execute(sa.text("SELECT name FROM lc_tenants ORDER BY name"))]
        return [self.tenant(n) for n in names]

    def transition(self, name: str, to: str, *, event_key: str, actor: str = "system", **links: Any) -> bool:
        """Move a tenant to `to`; IllegalTransition when the machine forbids it. Idempotent per
        event key (a re-run step finds its transition done and returns False)."""
        with self.db.write() as conn:
            if conn.execute(sa.text("SELECT 1 FROM lc_audit WHERE event_key = :k"), {"k": event_key}).first():
                return False
            state = conn.execute(
                sa.text("SELECT state FROM lc_tenants WHERE name = :n"), {"n": name}
            ).scalar()
            if state is None:
                raise NotFound(f"tenant {name!r} not found")
            TENANT.check(name, str(state), to)
            conn.execute(
                sa.text("UPDATE lc_tenants SET state = :s, updated_at = :t WHERE name = :n"),
                {"s": to, "t": now(), "n": name},
            )
            detail = {"from": state, "to": to, **links.pop("detail", {})}
            audit.append(
                conn, event_key, event="tenant.transition", tenant=name, actor=actor, detail=detail, **links
            )
        return True

    def update_policy(self, name: str, policy: Mapping[str, Any], *, event_key: str, **links: Any) -> None:
        with self.db.write() as conn:
            conn.execute(
                sa.text("UPDATE lc_tenants SET policy = :p, updated_at = :t WHERE name = :n"),
                {"p": json.dumps(policy), "t": now(), "n": name},
            )
            audit.append(conn, event_key, event="tenant.policy_updated", tenant=name, **links)

    def record(self, event_key: str, *, event: str, tenant: str, **links: Any) -> None:
        with self.db.write() as conn:
            audit.append(conn, event_key, event=event, tenant=tenant, **links)

    def put_clusters(self, name: str, clusters: list[str], *, event_key: str, **links: Any) -> bool:
        """The clusters the tenant is realized in, with their audit record. Idempotent per event key."""
        with self.db.write() as conn:
            if conn.execute(sa.text("SELECT 1 FROM lc_audit WHERE event_key = :k"), {"k": event_key}).first():
                return False
            conn.execute(sa.text("DELETE FROM lc_tenant_clusters WHERE tenant = :t"), {"t": name})
            for cluster in clusters:
                conn.execute(
                    sa.text("INSERT INTO lc_tenant_clusters (tenant, cluster) VALUES (:t, :c)"),
                    {"t": name, "c": cluster},
                )
            audit.append(conn, event_key, event="tenant.clusters", tenant=name, **links)
        return True

    def clusters(self, name: str) -> list[str]:
        with self.db.read() as conn:
            rows = conn.execute(
                sa.text("SELECT cluster FROM lc_tenant_clusters WHERE tenant = :t ORDER BY cluster"),
                {"t": name},
            ).all()
        return [str(r[0]) for r in rows]

    # deployments ---------------------------------------------------------------------------
    def deployments(self, tenant: str | None = None) -> list[dict[str, Any]]:
        sql = (
            "SELECT d.tenant, d.name, d.state, d.spec, d.updated_at, q.queued_at FROM lc_deployments d "
            "LEFT JOIN lc_queue q ON q.tenant = d.tenant AND q.name = d.name"
        )
        with self.db.read() as conn:
            rows = conn.execute(
                sa.text(sql + (" WHERE d.tenant = :t" if tenant else "") + " ORDER BY d.tenant, d.name"),
                {"t": tenant},
            ).all()
        out = []
        for r in rows:
            dep = {"tenant": r[0], "name": r[1], "state": r[2], "spec": json.loads(r[3]), "updated_at": r[4]}
            if r[5] is not None:
                dep["queued_at"] = r[5]
            out.append(dep)
        return out

    def usage(self, tenant: str) -> dict[str, int]:
        """GPUs held now per class: the running deployments' replicas x GPUs per replica."""
        out: dict[str, int] = {}
        for d in self.deployments(tenant):
            if d["state"] == "running":
                spec = d["spec"]
                cls = str(spec["gpu_class"])
                out[cls] = out.get(cls, 0) + int(spec["gpus_per_replica"]) * int(spec["replicas"])
        return out

    def put_deployment(
        self,
        tenant: str,
        name: str,
        state: str,
        spec: Mapping[str, Any] | None,
        *,
        event_key: str,
        **links: Any,
    ) -> None:
        """Move a deployment to `state` (creating it), with `spec` (None: the one it has, read in
        the same transaction, so a concurrent spec change is not undone)."""
        with self.db.write() as conn:
            if conn.execute(sa.text("SELECT 1 FROM lc_audit WHERE event_key = :k"), {"k": event_key}).first():
                return
            row = conn.execute(
                sa.text("SELECT state, spec FROM lc_deployments WHERE tenant = :t AND name = :n"),
                {"t": tenant, "n": name},
            ).first()
            old = row[0] if row else None
            if spec is None:
                if row is None:
                    raise NotFound(f"deployment {tenant}/{name} not found")
                spec = json.loads(row[1])
            if old is None:
                DEPLOYMENT.check(f"{tenant}/{name}", DEPLOYMENT.initial, state)
                conn.execute(
                    sa.text(
                        "INSERT INTO lc_deployments (tenant, name, state, spec, updated_at) "
                        "VALUES (:t, :n, :s, :p, :u)"
                    ),
                    {"t": tenant, "n": name, "s": state, "p": json.dumps(spec), "u": now()},
                )
            else:
                if old != state:
                    DEPLOYMENT.check(f"{tenant}/{name}", str(old), state)
                conn.execute(
                    sa.text(
                        "UPDATE lc_deployments SET state = :s, spec = :p, updated_at = :u "
                        "WHERE tenant = :t AND name = :n"
                    ),
                    {"t": tenant, "n": name, "s": state, "p": json.dumps(spec), "u": now()},
                )
            self._queue_position(conn, tenant, name, old, state)
            audit.append(
                conn,
                event_key,
                event="deployment.transition",
                tenant=tenant,
                detail={
                    "deployment": name,
                    "from": old or DEPLOYMENT.initial,
                    "to": state,
                    "spec": dict(spec),
                },
                **links,
            )

    def put_spec(
        self, tenant: str, name: str, spec: Mapping[str, Any], *, event_key: str, **links: Any
    ) -> str:
        """Change a deployment's spec in whatever state it is in now (read in the same
        transaction: a preemption meanwhile is kept); returns that state. Audited as a transition
        to the same state."""
        with self.db.write() as conn:
            state = conn.execute(
                sa.text("SELECT state FROM lc_deployments WHERE tenant = :t AND name = :n"),
                {"t": tenant, "n": name},
            ).scalar()
            if state is None:
                raise NotFound(f"deployment {tenant}/{name} not found")
            if conn.execute(sa.text("SELECT 1 FROM lc_audit WHERE event_key = :k"), {"k": event_key}).first():
                return str(state)
            conn.execute(
                sa.text(
                    "UPDATE lc_deployments SET spec = :p, updated_at = :u WHERE tenant = :t AND name = :n"
                ),
                {"t": tenant, "n": name, "p": json.dumps(spec), "u": now()},
            )
            audit.append(
                conn,
                event_key,
                event="deployment.transition",
                tenant=tenant,
                detail={"deployment": name, "from": state, "to": state, "spec": dict(spec)},
                **links,
            )
        return str(state)

    @staticmethod
    def _queue_position(conn: sa.Connection, tenant: str, name: str, old: str | None, state: str) -> None:
        """Entering the queue records the time (FIFO within a tier); leaving it drops the row. A
        spec change while queued keeps the place."""
        if state == "queued" and old != "queued":
            conn.execute(
                sa.text("DELETE FROM lc_queue WHERE tenant = :t AND name = :n"), {"t": tenant, "n": name}
            )
            conn.execute(
                sa.text("INSERT INTO lc_queue (tenant, name, queued_at) VALUES (:t, :n, :q)"),
                {"t": tenant, "n": name, "q": now()},
            )
        elif state != "queued":
            conn.execute(
                sa.text("DELETE FROM lc_queue WHERE tenant = :t AND name = :n"), {"t": tenant, "n": name}
            )

    # capacity ------------------------------------------------------------------------------
    def reported_capacity(self) -> dict[str, int]:
        """GPUs per class as last reported by the scheduler."""
        with self.db.read() as conn:
            rows = conn.execute(sa.text("SELECT gpu_class, gpus FROM lc_capacity")).all()
        return {str(r[0]): int(r[1]) for r in rows}

    def report_capacity(self, gpu_class: str, gpus: int, *, event_key: str, **links: Any) -> bool:
        """Record how many GPUs of a class the scheduler says exist; audited, once per event key."""
        with self.db.write() as conn:
            if conn.execute(sa.text("SELECT 1 FROM lc_audit WHERE event_key = :k"), {"k": event_key}).first():
                return False
            conn.execute(sa.text("DELETE FROM lc_capacity WHERE gpu_class = :c"), {"c": gpu_class})
            conn.execute(
                sa.text("INSERT INTO lc_capacity (gpu_class, gpus, updated_at) VALUES (:c, :g, :u)"),
                {"c": gpu_class, "g": gpus, "u": now()},
            )
            detail = {"gpu_class": gpu_class, "gpus": gpus, **links.pop("detail", {})}
            audit.append(conn, event_key, event="capacity.reported", tenant="", detail=detail, **links)
        return True

    # workload objects ----------------------------------------------------------------------
    def put_workload(
        self,
        tenant: str,
        name: str,
        record: Mapping[str, Any] | None,
        *,
        event_key: str,
        event: str,
        detail: Mapping[str, Any],
        **links: Any,
    ) -> bool:
        """Keep (or, with None, forget) the workload object of a deployment and its placement,
        with the audit record in the same transaction. Idempotent per event key."""
        with self.db.write() as conn:
            if conn.execute(sa.text("SELECT 1 FROM lc_audit WHERE event_key = :k"), {"k": event_key}).first():
                return False
            conn.execute(
                sa.text("DELETE FROM lc_workloads WHERE tenant = :t AND name = :n"), {"t": tenant, "n": name}
            )
            if record is not None:
                conn.execute(
                    sa.text(
                        "INSERT INTO lc_workloads (tenant, name, record, updated_at) VALUES (:t, :n, :r, :u)"
                    ),
                    {"t": tenant, "n": name, "r": json.dumps(record), "u": now()},
                )
            audit.append(conn, event_key, event=event, tenant=tenant, detail=dict(detail), **links)
        return True

    def workloads(self, tenant: str) -> dict[str, dict[str, Any]]:
        """Deployment name -> {"object", "placement", "decision_id", "bundle_revision"}."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.text("SELECT name, record FROM lc_workloads WHERE tenant = :t ORDER BY name"),
                {"t": tenant},
            ).all()
        return {str(r[0]): json.loads(r[1]) for r in rows}

    # tokens --------------------------------------------------------------------------------
    def revoke_tokens(self, tenant: str, **links: str) -> int:
        """Offboarding: every token of the tenant stops working (pdp/lifecycle/storage/credentials.py);
        `links`: the offboarding's workflow and decision, on each token's record."""
        return self.credentials.revoke_tenant(tenant, actor="system", reason="tenant offboarded", **links)

    # certificates --------------------------------------------------------------------------
    def put_certificate(
        self, tenant: str, document: str, digest: str, signature: Mapping[str, Any] | None = None
    ) -> None:
        """The first certificate of a tenant stays (a re-run step issues one with a later time)."""
        with self.db.write() as conn:
            inserted = conn.execute(
                sa.text(
                    "INSERT INTO lc_certificates (tenant, document, digest) VALUES (:t, :d, :g) "
                    "ON CONFLICT (tenant) DO NOTHING"
                ),
                {"t": tenant, "d": document, "g": digest},
            ).rowcount
            if inserted and signature is not None:
                conn.execute(
                    sa.text("INSERT INTO lc_certificate_signatures (tenant, signature) VALUES (:t, :s)"),
                    {"t": tenant, "s": json.dumps(dict(signature))},
                )

    def certificate(self, tenant: str) -> dict[str, Any]:
        with self.db.read() as conn:
            row = conn.execute(
                sa.text(
                    "SELECT c.document, c.digest, s.signature FROM lc_certificates c "
                    "LEFT JOIN lc_certificate_signatures s ON s.tenant = c.tenant WHERE c.tenant = :t"
                ),
                {"t": tenant},
            ).first()
        if row is None:
            raise NotFound(f"no certificate of destruction for {tenant!r}")
        # The document is returned verbatim too: the signature covers exactly those bytes.
        out = {"certificate": json.loads(row[0]), "document": row[0], "sha256": row[1]}
        if row[2] is not None:
            out["signature"] = json.loads(row[2])
        return out

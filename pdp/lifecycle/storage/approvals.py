"""The approvals of the lifecycle store: one per request (its workflow id), opened again when the
request needs approval anew, each opening and answer in the hash-chained audit trail."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from pdp.lifecycle.storage import audit
from pdp.lifecycle.storage.common import NotFound, now
from pdp.lifecycle.storage.db import Database


class ApprovalStore:
    db: Database

    def open_approval(
        self,
        approval_id: str,
        tenant: str,
        kind: str,
        decision: Mapping[str, Any],
        grant: Mapping[str, Any] | None = None,
    ) -> bool:
        """Open the approval of a request for `decision`, or open it again for a new decision of
        the same request (it asks again with new figures). False, and nothing opened, when the
        tenant is being offboarded: the tenant row is locked by the check (an UPDATE), so an
        offboarding either sees this approval open or this finds the tenant offboarding."""
        decision_id = str(decision.get("decision_id", ""))
        with self.db.write() as conn:
            ok = conn.execute(
                sa.text(
                    "UPDATE lc_tenants SET updated_at = updated_at "
                    "WHERE name = :t AND state NOT IN ('offboarding', 'offboarded')"
                ),
                {"t": tenant},
            ).rowcount
            if not ok:
                return False
            row = conn.execute(
                sa.text("SELECT decision FROM lc_approvals WHERE id = :i"), {"i": approval_id}
            ).first()
            if row is not None and json.loads(row[0]).get("decision_id") == decision_id:
                return True  # a re-run step
            values = {"i": approval_id, "t": tenant, "k": kind, "d": json.dumps(decision), "c": now()}
            if row is None:
                conn.execute(
                    sa.text(
                        "INSERT INTO lc_approvals (id, tenant, kind, status, decision, created_at, "
                        "updated_at) VALUES (:i, :t, :k, 'pending', :d, :c, :c)"
                    ),
                    values,
                )
            else:
                conn.execute(
                    sa.text(
                        "UPDATE lc_approvals SET status = 'pending', decision = :d, resolved_by = NULL, "
                        "updated_at = :c WHERE id = :i"
                    ),
                    values,
                )
            audit.append(
                conn,
                f"{approval_id}:approval.requested:{decision_id}",
                event="approval.requested",
                tenant=tenant,
                workflow_id=approval_id,
                decision_id=decision_id,
                bundle_revision=str(decision.get("bundle_revision", "")),
                detail={
                    "kind": kind,
                    "reasons": list(decision.get("reasons", [])),
                    **({"usage": decision["usage"]} if "usage" in decision else {}),
                    **({"grant": dict(grant)} if grant else {}),
                },
            )
        return True

    def set_approval(
        self,
        approval_id: str,
        status: str,
        by: str,
        decision: Mapping[str, Any] | None = None,
        *,
        event_key: str,
    ) -> None:
        with self.db.write() as conn:
            row = conn.execute(
                sa.text("SELECT tenant, kind FROM lc_approvals WHERE id = :i"), {"i": approval_id}
            ).first()
            if row is None:
                raise NotFound(f"approval {approval_id!r} not found")
            if conn.execute(sa.text("SELECT 1 FROM lc_audit WHERE event_key = :k"), {"k": event_key}).first():
                return
            conn.execute(
                sa.text(
                    "UPDATE lc_approvals SET status = :s, resolved_by = :b, updated_at = :u WHERE id = :i"
                ),
                {"s": status, "b": by, "u": now(), "i": approval_id},
            )
            audit.append(
                conn,
                event_key,
                event=f"approval.{status}",
                tenant=str(row[0]),
                actor=by,
                workflow_id=approval_id,
                decision_id=str((decision or {}).get("decision_id", "")),
                bundle_revision=str((decision or {}).get("bundle_revision", "")),
                detail={"kind": row[1]},
            )

    def approvals(self, tenant: str | None = None, open_only: bool = True) -> list[dict[str, Any]]:
        sql = (
            "SELECT id, tenant, kind, status, decision, resolved_by, created_at, updated_at FROM lc_approvals"
        )
        where = []
        if open_only:
            where.append("status IN ('pending', 'escalated')")
        if tenant:
            where.append("tenant = :t")
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self.db.read() as conn:
            rows = conn.execute(sa.text(sql + " ORDER BY created_at"), {"t": tenant}).all()
        keys = ("id", "tenant", "kind", "status", "decision", "resolved_by", "created_at", "updated_at")
        out = [dict(zip(keys, r, strict=True)) for r in rows]
        for a in out:
            a["decision"] = json.loads(a["decision"])
        return out

    def approval(self, approval_id: str) -> dict[str, Any]:
        for a in self.approvals(open_only=False):
            if a["id"] == approval_id:
                return a
        raise NotFound(f"approval {approval_id!r} not found")

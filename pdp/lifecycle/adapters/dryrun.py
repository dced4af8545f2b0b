"""The dry-run adapter (embedded default): records what would be applied, in the lifecycle
database, so the effects can be shown and counted (the durability tests count them)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from pdp.lifecycle.db import Database


class DryRunAdapter:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _record(self, op: str, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        with self.db.write() as conn:
            seq = conn.execute(sa.text("SELECT COALESCE(MAX(seq), 0) + 1 FROM lc_effects")).scalar()
            conn.execute(
                sa.text(
                    "INSERT INTO lc_effects (seq, op, kind, namespace, name, body, at) "
                    "VALUES (:s, :op, :k, :ns, :n, :b, :at)"
                ),
                {
                    "s": seq,
                    "op": op,
                    "k": obj["kind"],
                    "ns": meta.get("namespace", ""),
                    "n": meta["name"],
                    "b": json.dumps(obj, sort_keys=True),
                    "at": datetime.now(UTC).isoformat(),
                },
            )

    def apply(self, obj: Mapping[str, Any]) -> None:
        self._record("apply", obj)

    def delete(self, obj: Mapping[str, Any]) -> None:
        self._record("delete", obj)

    def exists(self, obj: Mapping[str, Any]) -> bool:
        meta = obj["metadata"]
        with self.db.read() as conn:
            last = conn.execute(
                sa.text(
                    "SELECT op FROM lc_effects WHERE kind = :k AND namespace = :ns AND name = :n "
                    "ORDER BY seq DESC LIMIT 1"
                ),
                {"k": obj["kind"], "ns": meta.get("namespace", ""), "n": meta["name"]},
            ).scalar()
        return last == "apply"

    def gone(self, obj: Mapping[str, Any]) -> bool:
        return not self.exists(obj)  # a recorded delete takes effect at once

    def effects(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(
                sa.text("SELECT seq, op, kind, namespace, name, at FROM lc_effects ORDER BY seq")
            ).all()
        return [
            {"seq": r[0], "op": r[1], "kind": r[2], "namespace": r[3], "name": r[4], "at": r[5]} for r in rows
        ]

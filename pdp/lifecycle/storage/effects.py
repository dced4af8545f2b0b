"""What a dry run would have applied, kept in the lifecycle database (table lc_effects) so the
effects can be shown (`pdp lifecycle effects`, GET /v1/capacity) and counted across a crash (the
durability tests count them). The dry-run adapter (pdp/substrate/dryrun.py) is given this log; it
holds no database of its own."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from pdp.lifecycle.storage.db import Database


class EffectLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, op: str, obj: Mapping[str, Any]) -> None:
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

    def last(self, obj: Mapping[str, Any]) -> str | None:
        """The last op recorded for `obj` (its kind, namespace and name), None when none was."""
        meta = obj["metadata"]
        with self.db.read() as conn:
            found = conn.execute(
                sa.text(
                    "SELECT op FROM lc_effects WHERE kind = :k AND namespace = :ns AND name = :n "
                    "ORDER BY seq DESC LIMIT 1"
                ),
                {"k": obj["kind"], "ns": meta.get("namespace", ""), "n": meta["name"]},
            ).scalar()
        return None if found is None else str(found)

    def rows(self, bodies: bool = False) -> list[dict[str, Any]]:
        """Every recorded op in order: seq, op, kind, namespace, name, at (and body)."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.text("SELECT seq, op, kind, namespace, name, at, body FROM lc_effects ORDER BY seq")
            ).all()
        out = []
        for r in rows:
            row = {"seq": r[0], "op": r[1], "kind": r[2], "namespace": r[3], "name": r[4], "at": r[5]}
            if bodies:
                row["body"] = json.loads(r[6])
            out.append(row)
        return out

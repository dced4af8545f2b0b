"""The dry-run adapter (the default without --kubeconfig): applies nothing to any cluster and
records what it would have applied, in the lifecycle database, so the effects can be shown and
counted (the durability tests count them). Everything it produces says so: effects are
`would_apply`/`would_delete` with `mode: dry-run`, and so are the certificates of destruction
issued under it (pdp/lifecycle/services/certificate.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from pdp.lifecycle.storage.db import Database


class DryRunAdapter:
    mode = "dry-run"

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

    def nodes(self) -> list[dict[str, Any]] | None:
        return None  # no cluster: the fleet's nominal nodes stand for them

    def occupancy(self, nodes: list[str]) -> dict[str, list[dict[str, str]]]:
        return {}  # nothing runs anywhere in a dry run

    def effects(self, bodies: bool = False) -> list[dict[str, Any]]:
        """What a cluster would have been told, in order; each says it was not: `mode` dry-run,
        `op` would_apply or would_delete."""
        with self.db.read() as conn:
            rows = conn.execute(
                sa.text("SELECT seq, op, kind, namespace, name, at, body FROM lc_effects ORDER BY seq")
            ).all()
        out = []
        for r in rows:
            effect = {"seq": r[0], "mode": self.mode, "op": f"would_{r[1]}", "kind": r[2],
                      "namespace": r[3], "name": r[4], "at": r[5]}  # fmt: skip
            if bodies:
                effect["body"] = json.loads(r[6])
            out.append(effect)
        return out

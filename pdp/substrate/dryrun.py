"""The dry-run adapter (the default without --kubeconfig): applies nothing to any cluster and
records what it would have applied in the log it is given (the lifecycle keeps it in its database:
pdp/lifecycle/storage/effects.py), so the effects can be shown and counted. Everything it produces
says so: effects are `would_apply`/`would_delete` with `mode: dry-run`, and so are the certificates
of destruction issued under it (pdp/lifecycle/services/certificate.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class EffectLog(Protocol):
    """Where a dry run's ops go: the adapter holds no state of its own."""

    def record(self, op: str, obj: Mapping[str, Any]) -> None:
        """Keep `op` ("apply" or "delete") of `obj`."""

    def last(self, obj: Mapping[str, Any]) -> str | None:
        """The last op kept for `obj` (same kind, namespace and name), None when none was."""

    def rows(self, bodies: bool = False) -> list[dict[str, Any]]:
        """Every op kept, in order: seq, op, kind, namespace, name, at (and body)."""


class DryRunAdapter:
    mode = "dry-run"

    def __init__(self, log: EffectLog) -> None:
        self.log = log

    def apply(self, obj: Mapping[str, Any]) -> None:
        self.log.record("apply", obj)

    def delete(self, obj: Mapping[str, Any]) -> None:
        self.log.record("delete", obj)

    def exists(self, obj: Mapping[str, Any]) -> bool:
        return self.log.last(obj) == "apply"

    def gone(self, obj: Mapping[str, Any]) -> bool:
        return not self.exists(obj)  # a recorded delete takes effect at once

    def nodes(self) -> list[dict[str, Any]] | None:
        return None  # no cluster: the fleet's nominal nodes stand for them

    def occupancy(self, nodes: list[str]) -> dict[str, list[dict[str, str]]]:
        return {}  # nothing runs anywhere in a dry run

    def effects(self, bodies: bool = False) -> list[dict[str, Any]]:
        """What a cluster would have been told, in order; each says it was not: `mode` dry-run,
        `op` would_apply or would_delete."""
        return [
            {"seq": r["seq"], "mode": self.mode, "op": f"would_{r['op']}",
             **{k: v for k, v in r.items() if k not in ("seq", "op")}}
            for r in self.log.rows(bodies)
        ]  # fmt: skip

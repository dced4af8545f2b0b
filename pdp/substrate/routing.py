"""One adapter in front of several substrates: each object goes to the adapter of its API group
(`slurm.gpupaas.io` to Slurm), everything else to the default (Kubernetes or dry run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pdp.substrate.base import Adapter, ObjectApplier


class RoutingAdapter:
    def __init__(self, default: Adapter, routes: Mapping[str, ObjectApplier]) -> None:
        self.default = default
        self.routes = dict(routes)
        self.mode = default.mode

    def nodes(self) -> list[dict[str, Any]] | None:
        return self.default.nodes()

    def occupancy(self, nodes: list[str]) -> dict[str, list[dict[str, str]]]:
        return self.default.occupancy(nodes)

    def _for(self, obj: Mapping[str, Any]) -> ObjectApplier:
        group = str(obj.get("apiVersion", "")).split("/", 1)[0]
        return self.routes.get(group, self.default)

    def apply(self, obj: Mapping[str, Any]) -> None:
        self._for(obj).apply(obj)

    def delete(self, obj: Mapping[str, Any]) -> None:
        self._for(obj).delete(obj)

    def exists(self, obj: Mapping[str, Any]) -> bool:
        return self._for(obj).exists(obj)

    def gone(self, obj: Mapping[str, Any]) -> bool:
        return self._for(obj).gone(obj)

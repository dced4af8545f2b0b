"""Applies the GPU operator's sharing configuration when the fleet changes (the lifecycle calls
`realize` with every fleet it writes for its bundle: at start, after a carving, after an edit of
the operator's fleet document).

Server-side apply under its own field manager: the Node objects here carry only the sharing
labels, and under the lifecycle's manager (which owns the nodes' pool labels and taints of a
carving) applying them would drop those. Only the objects that differ from those applied last
are sent (a carving: the device plugin ConfigMap and the carved nodes); a failure is raised and
the next fleet write applies what is still missing.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping
from typing import Any

from pdp.substrate.gpu_operator import sharing
from pdp.substrate.kubernetes.adapter import KubernetesAdapter
from pdp.substrate.kubernetes.objects import key

FIELD_MANAGER = "gpupaas-gpu-sharing"


class SharingRealizer:
    def __init__(self, kube: KubernetesAdapter, namespace: str = sharing.NAMESPACE) -> None:
        self.kube = kube
        self.namespace = namespace
        self._lock = threading.Lock()
        self._applied: dict[str, str] = {}  # object key -> digest of what was applied

    def realize(self, fleet: Mapping[str, Any]) -> list[str]:
        """Apply the sharing objects of `fleet` over the cluster's pool nodes; the keys of the
        objects applied (none when nothing changed)."""
        with self._lock:
            applied = []
            for obj in sharing.render(fleet, self.kube.nodes() or [], self.namespace):
                name = key(obj)
                digest = hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()
                if self._applied.get(name) == digest:
                    continue
                self.kube.apply(obj, field_manager=FIELD_MANAGER)
                self._applied[name] = digest
                applied.append(name)
            return applied


__all__ = ["FIELD_MANAGER", "SharingRealizer"]

"""Adapters apply the tenant's objects to a platform: Kubernetes (server-side apply), Slurm
(sacctmgr), or dry run; substrates render the objects beyond Kubernetes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class ObjectApplier(Protocol):
    """What every substrate's adapter does with the objects rendered for it."""

    def apply(self, obj: Mapping[str, Any]) -> None:
        """Make `obj` exist as given; applying the same object twice changes nothing."""

    def delete(self, obj: Mapping[str, Any]) -> None:
        """Remove `obj`; absent is fine."""

    def exists(self, obj: Mapping[str, Any]) -> bool:
        """True when `obj` is present and not being deleted."""

    def gone(self, obj: Mapping[str, Any]) -> bool:
        """True when `obj` no longer exists at all (not even as being deleted)."""


class Adapter(ObjectApplier, Protocol):
    """The lifecycle's adapter: objects, plus the cluster's nodes and who runs on them."""

    # "kubernetes" or "dry-run": said in the effects, the certificates and the worker's log.
    mode: str

    def nodes(self) -> list[dict[str, Any]] | None:
        """The nodes of the platform's pools ({name, labels, taints}); None when the adapter
        sees no cluster (dry run: the fleet's nominal nodes stand for them)."""

    def occupancy(self, nodes: list[str]) -> dict[str, list[dict[str, str]]]:
        """Node name -> the lifecycle's deployments running there ({tenant, deployment})."""


class Substrate(Protocol):
    def render(self, policy: Mapping[str, Any], fleet: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
        """The tenant's objects on this substrate, by lifecycle group (namespaces, quota, ...)."""

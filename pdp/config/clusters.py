"""How the lifecycle reaches each cluster of the fleet: a clusters-access document.

```yaml
clusters:
  eu-west: {kubeconfig: eu-west.kubeconfig, context: admin@eu-west}
  us-east: {in_cluster: true}
```

It is a document of its own, not a field of the fleet: the fleet is policy data, published in
the bundle every PDP of every cluster serves and shown to whoever reads decisions; the paths of
credential files and kubeconfig contexts are how one lifecycle worker is deployed (a worker in
the EU cluster reaches it in-cluster and the US one by kubeconfig; a worker elsewhere differently)
and change without a policy change. Every cluster of the fleet must be named (a tenant eligible
for a cluster the worker cannot reach could never be realized there), and only those.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pdp.config.documents import ConfigError, ConfigErrors, read_yaml, schema_errors


@dataclass(frozen=True)
class ClusterAccess:
    name: str
    kubeconfig: Path | None = None  # None: in-cluster (the pod's service account)
    context: str | None = None

    @property
    def in_cluster(self) -> bool:
        return self.kubeconfig is None

    def describe(self) -> str:
        if self.kubeconfig is None:
            return "in-cluster service account"
        return f"{self.kubeconfig}" + (f" (context {self.context})" if self.context else "")


def _access(
    file: str, name: str, entry: Mapping[str, Any], base: Path
) -> tuple[ClusterAccess | None, list[ConfigError]]:
    where = f"clusters.{name}"
    if entry.get("in_cluster") and "kubeconfig" in entry:
        return None, [ConfigError(file, where, "names both kubeconfig and in_cluster: give one")]
    if entry.get("in_cluster"):
        if "context" in entry:
            return None, [ConfigError(file, f"{where}.context", "applies to a kubeconfig, not to in_cluster")]
        return ClusterAccess(name), []
    if "kubeconfig" not in entry:
        return None, [ConfigError(file, where, "names neither kubeconfig nor in_cluster: give one")]
    path = Path(str(entry["kubeconfig"]))
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        return None, [ConfigError(file, f"{where}.kubeconfig", f"{str(path)!r} is not a readable file")]
    context = entry.get("context")
    if context is not None:
        contexts = _contexts(path)
        if contexts is not None and context not in contexts:
            known = ", ".join(sorted(contexts)) or "none"
            return None, [
                ConfigError(
                    file, f"{where}.context", f"{context!r} is not a context of {path} (it has: {known})"
                )
            ]
    return ClusterAccess(name, path, str(context) if context is not None else None), []


def _contexts(kubeconfig: Path) -> set[str] | None:
    document, errors = read_yaml(kubeconfig)
    if errors or not isinstance(document, dict):
        return None  # the Kubernetes client reports what is wrong with the file itself
    return {str(c.get("name")) for c in document.get("contexts") or [] if isinstance(c, dict)}


def load_clusters(path: Path, fleet: Mapping[str, Any]) -> dict[str, ClusterAccess]:
    """The access of every cluster of `fleet` (the `fleet` mapping of the fleet document), from
    the clusters-access document at `path`; ConfigErrors naming file, field and problem."""
    file = str(path)
    document, errors = read_yaml(path)
    errors = errors or schema_errors(file, "clusters", document)
    if errors:
        raise ConfigErrors(errors)
    known = set((fleet.get("clusters") or {}).keys())
    out: dict[str, ClusterAccess] = {}
    for name, entry in document["clusters"].items():
        if name not in known:
            errors.append(
                ConfigError(
                    file,
                    f"clusters.{name}",
                    f"is not a cluster of the fleet (it has: {', '.join(sorted(known))})",
                )
            )
            continue
        access, problems = _access(file, str(name), entry, path.parent)
        errors += problems
        if access is not None:
            out[str(name)] = access
    for name in sorted(known - set(document["clusters"])):
        errors.append(
            ConfigError(file, f"clusters.{name}", "is missing: every cluster of the fleet needs its access")
        )
    if errors:
        raise ConfigErrors(errors)
    return out

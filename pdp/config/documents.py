"""Loading tenant policy documents and the fleet inventory, validated against their schemas.

Every problem is reported with the file it is in, the path inside the document and what is
wrong, and all problems of a configuration are reported together rather than one per run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pdp.config.index import fleet_index, namespace_index
from pdp.schemas import validator
from pdp.schemas.errors import problems


@dataclass(frozen=True)
class ConfigError:
    file: str
    path: str
    problem: str
    code: str = "SCHEMA"

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.problem}"


class ConfigErrors(Exception):
    """One or more problems in the tenant or fleet documents."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


@dataclass(frozen=True)
class PolicyConfig:
    """Validated tenant documents and fleet, with the file each came from."""

    fleet: dict[str, Any]
    fleet_file: str
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)
    tenant_files: dict[str, str] = field(default_factory=dict)

    def bundle_data(self) -> dict[str, Any]:
        """The data document the policies read, rooted at `gpupaas` (see docs/decision-contract.md)."""
        index = {**fleet_index(self.fleet), "namespaces": namespace_index(self.tenants)}
        return {"gpupaas": {"fleet": self.fleet, "tenants": self.tenants, "index": index}}


def read_yaml(path: Path) -> tuple[Any, list[ConfigError]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [ConfigError(str(path), "(document)", f"cannot be read: {exc.strerror}")]
    try:
        return yaml.safe_load(text), []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(document)"
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [ConfigError(str(path), where, f"is not valid YAML: {problem}")]


def schema_errors(file: str, schema: str, document: Any) -> list[ConfigError]:
    found = problems(validator(schema).iter_errors(document))
    return [ConfigError(file, path, problem) for path, problem in found]


def validate_tenant(document: Any, file: str = "<tenant>") -> list[ConfigError]:
    """Schema problems of one tenant document (the form with the top-level `tenant` key)."""
    return schema_errors(file, "tenant", document)


def load_tenant_document(path: Path) -> dict[str, Any]:
    """One tenant document, validated; raises ConfigErrors naming file, path and problem."""
    document, errors = read_yaml(path)
    if not errors:
        errors = validate_tenant(document, str(path))
    if errors:
        raise ConfigErrors(errors)
    tenant: dict[str, Any] = document["tenant"]
    return tenant


def _tenant_files(tenants: Path) -> list[Path]:
    if tenants.is_file():
        return [tenants]
    return sorted([*tenants.glob("*.yaml"), *tenants.glob("*.yml"), *tenants.glob("*.json")])


def load_config(tenants: Path, fleet: Path, *, allow_no_tenants: bool = False) -> PolicyConfig:
    """Tenant documents (a file or a folder of them) and the fleet, schema-validated. An empty
    folder is an error unless `allow_no_tenants` (the lifecycle's state folder, before the first
    tenant or after the last one left).

    Contradictions between documents (residency no cluster satisfies, unknown GPU classes, ...)
    are checked by the policies themselves at bundle build time; see `pdp.bundles.build`.
    """
    errors: list[ConfigError] = []
    fleet_doc, read_errors = read_yaml(fleet)
    errors += read_errors or schema_errors(str(fleet), "fleet", fleet_doc)

    files = _tenant_files(tenants)
    if not files and not allow_no_tenants:
        errors.append(ConfigError(str(tenants), "(folder)", "holds no tenant documents (*.yaml)"))
    loaded: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    for path in files:
        document, read_errors = read_yaml(path)
        file_errors = read_errors or validate_tenant(document, str(path))
        if file_errors:
            errors += file_errors
            continue
        tenant = document["tenant"]
        name = tenant["name"]
        if name in loaded:
            errors.append(
                ConfigError(str(path), "tenant.name", f"tenant {name!r} is already defined in {origin[name]}")
            )
            continue
        loaded[name] = tenant
        origin[name] = str(path)
    if errors:
        raise ConfigErrors(errors)
    return PolicyConfig(fleet=fleet_doc["fleet"], fleet_file=str(fleet), tenants=loaded, tenant_files=origin)

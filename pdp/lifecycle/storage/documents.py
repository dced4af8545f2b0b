"""The lifecycle's tenant documents: kept under the state directory, never in the repository.

The bundle the worker serves is built from `<state>/lifecycle/tenants/` only. Publishing a tenant
writes its document there; withdrawing it removes it. The documents given by `--tenants` (by
default the repository's examples) are *declared* tenants: at start the worker imports each one
it has not seen before into its store as active (audited `tenant.imported`, with the file and the
SHA-256 of the document) and copies it into the state folder, so the API and the bundle agree on
which tenants exist. The `--tenants` files are only read; from then on the store owns the tenant
(changes go through the API), and a declared document that differs from it is reported, not used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from pdp.config import load_tenant_document
from pdp.lifecycle.states import TenantState
from pdp.lifecycle.storage import audit
from pdp.lifecycle.storage.common import now as now_iso
from pdp.lifecycle.storage.db import Database

log = logging.getLogger(__name__)


def path_of(folder: Path, name: str) -> Path:
    return folder / f"{name}.yaml"


def write(folder: Path, policy: Mapping[str, Any]) -> Path:
    """Write one tenant document (mode 0600: it is the lifecycle's state) atomically."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = path_of(folder, str(policy["name"]))
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump({"tenant": dict(policy)}, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def remove(folder: Path, name: str) -> None:
    path_of(folder, name).unlink(missing_ok=True)


def names(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.yaml")} if folder.is_dir() else set()


def _declared_files(declared: Path) -> list[Path]:
    if declared.is_file():
        return [declared]
    if not declared.is_dir():
        return []
    return sorted([*declared.glob("*.yaml"), *declared.glob("*.yml"), *declared.glob("*.json")])


def _digest(policy: Mapping[str, Any]) -> str:
    return hashlib.sha256(audit.canonical(policy).encode()).hexdigest()


def import_declared(db: Database, declared: Path, folder: Path) -> list[str]:
    """Import the declared tenant documents the store does not hold yet (as active, audited) and
    make sure every tenant the store has in the bundle has its document in `folder`. Returns the
    names imported now. A declared document that is invalid stops the worker (ConfigErrors)."""
    imported = []
    for path in _declared_files(declared):
        policy = load_tenant_document(path)
        name = str(policy["name"])
        with db.write() as conn:
            row = conn.execute(
                sa.text("SELECT state, policy FROM lc_tenants WHERE name = :n"), {"n": name}
            ).first()
            if row is None:
                conn.execute(
                    sa.text(
                        "INSERT INTO lc_tenants (name, state, policy, workflow_id, updated_at) "
                        "VALUES (:n, :s, :p, '', :t)"
                    ),
                    {"n": name, "s": TenantState.ACTIVE, "p": json.dumps(policy), "t": now_iso()},
                )
                audit.append(
                    conn,
                    f"tenant:{name}:imported",
                    event="tenant.imported",
                    tenant=name,
                    detail={"to": TenantState.ACTIVE, "source": str(path), "sha256": _digest(policy)},
                )
                imported.append(name)
            elif json.loads(row[1]) != policy and row[0] != TenantState.OFFBOARDED:
                log.warning(
                    "%s: tenant %r differs from the lifecycle's (%s); the lifecycle's is used, "
                    "change it through the API",
                    path,
                    name,
                    row[0],
                )
    for name, policy in published(db).items():
        if not path_of(folder, name).exists():
            write(folder, policy)
    return imported


def published(db: Database) -> dict[str, dict[str, Any]]:
    """The tenants whose policy is in the bundle: active or suspended (and those on their way out
    that were not withdrawn yet), by name."""
    with db.read() as conn:
        rows = conn.execute(
            sa.text("SELECT name, policy FROM lc_tenants WHERE state IN (:a, :s)"),
            {"a": TenantState.ACTIVE, "s": TenantState.SUSPENDED},
        ).all()
    return {str(r[0]): json.loads(r[1]) for r in rows}

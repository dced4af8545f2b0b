"""The policy trees the lifecycle builds its bundle from, and which one is active.

A rollout (pdp/lifecycle/workflows/rollout.py) copies its candidate into
`<lifecycle state>/policies/<digest>/`, content-addressed and never changed after, and activating
it writes `<lifecycle state>/policies/active.json` (atomically, 0600) naming the tree. The worker
builds from the tree that file names when it starts (else from `--policies`), so an activation or
a rollback survives a restart, a crash between writing the file and rebuilding included.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from pdp.bundles.build import policy_files
from pdp.integrity.files import private_dir

ACTIVE = "active.json"


def folder(state: Path) -> Path:
    """Where the trees and the active pointer live (`state`: the lifecycle's state folder)."""
    return state / "policies"


def digest(tree: Path) -> str:
    """SHA-256 over the bundle's policy files of `tree` (paths and bytes): equal trees build equal
    bundles from equal data."""
    h = hashlib.sha256()
    found = False
    for path in policy_files(tree):
        found = True
        h.update(path.relative_to(tree).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    if not found:
        raise ValueError(f"{tree}: holds no policy (.rego) files")
    return h.hexdigest()


def snapshot(tree: Path, state: Path) -> tuple[Path, str]:
    """A copy of `tree`'s policy files kept under the state folder: (its path, its digest). The
    same content is copied once; a copy is complete or absent (renamed into place)."""
    found = digest(tree)
    home = folder(state)
    private_dir(home)
    target = home / found[:16]
    if target.is_dir() and digest(target) == found:
        return target, found
    stage = Path(tempfile.mkdtemp(prefix=".copy-", dir=home))
    try:
        for path in policy_files(tree):
            dest = stage / path.relative_to(tree)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        if target.exists():  # an incomplete copy left by a crash before the rename cannot exist; a
            shutil.rmtree(target)  # tree edited by hand is replaced by the content it should hold
        os.rename(stage, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return target, found


def active(state: Path) -> dict[str, Any] | None:
    """The active pointer ({"path", "digest", "rollout", ...}), or None before any rollout."""
    path = folder(state) / ACTIVE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ValueError(
            f"{path}: not JSON ({exc}); restore it or remove it to build from --policies"
        ) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("path"), str):
        raise ValueError(f"{path}: expected an object with a path")
    return doc


def set_active(state: Path, pointer: dict[str, Any]) -> None:
    """Make `pointer` the active tree, atomically (a reader sees the old file or the new one)."""
    home = folder(state)
    private_dir(home)
    fd, tmp = tempfile.mkstemp(prefix=".active-", dir=home)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(pointer, out, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, home / ACTIVE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def policies_to_build(state: Path, configured: Path) -> Path:
    """The tree the worker builds from at start: the active one, else `configured` (--policies)."""
    pointer = active(state)
    if pointer is None:
        return configured
    path = Path(pointer["path"])
    if not path.is_dir():
        raise ValueError(
            f"{folder(state) / ACTIVE}: the active policies {path} are gone; restore them or remove the "
            "file to build from --policies"
        )
    return path

"""`pdp decide` without a server: one decision in-process, in milliseconds when nothing changed.

The bundle is built once per set of inputs (policies, tenant and fleet documents, the code that
turns them into bundle data, the OPA that compiles them, the git commit in the revision) and kept
with its wasmtime-compiled module under `<state>/decide-cache/<key>/`. A later call with the same
inputs loads the compiled module (milliseconds) instead of building the bundle and starting OPA
(seconds). The wasm engine decides the same as OPA; tests/engine/test_engine_differential.py holds them
equal on every sample.

The cache is as trusted as the state folder (0700): a compiled module is native code.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pdp.bundles.build import git_commit, policy_files
from pdp.engine.wasm import WasmBundle, WasmEngine
from pdp.opa.binary import OPA_VERSION
from pdp.point import DecideOptions, DecisionPoint
from pdp.records.log import DecisionLog
from pdp.settings import EmbeddedSettings

_CACHE_FORMAT = "1"
_WASM_TARBALL = "bundle.wasm.tar.gz"
_COMPILED = "module.cwasm"
# The code that shapes bundle data: a change to it must not answer from a stale bundle.
_BUNDLE_CODE = (Path(__file__).parent / "config", Path(__file__).parent / "bundles" / "build.py")


@dataclass(frozen=True)
class OneShot:
    decision: dict[str, Any]
    revision: str
    cached: bool


def _files_of(path: Path, patterns: tuple[str, ...]) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for pattern in patterns for p in path.glob(pattern))


def inputs_key(settings: EmbeddedSettings) -> str:
    """A digest of everything a bundle built from `settings` depends on."""
    digest = hashlib.sha256()

    def add(label: str, path: Path) -> None:
        digest.update(f"{label}\0{path.name}\0".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")

    for path in policy_files(settings.policies):
        add(f"policy:{path.relative_to(settings.policies).as_posix()}", path)
    for path in _files_of(settings.tenants, ("*.yaml", "*.yml", "*.json")):
        add("tenant", path)
    add("fleet", settings.fleet)
    for code in _BUNDLE_CODE:
        for path in _files_of(code, ("*.py",)):
            add("code", path)
    versions = (_CACHE_FORMAT, OPA_VERSION, metadata.version("wasmtime"), git_commit(settings.policies) or "")
    digest.update("\0".join(versions).encode())
    return digest.hexdigest()[:24]


def _build_into(settings: EmbeddedSettings, entry: Path) -> None:
    """Build the wasm bundle and its compiled module into `entry`, atomically."""
    from pdp.bundles.build import build_bundle
    from pdp.bundles.signing import ensure_keypair
    from pdp.config import load_config

    config = load_config(settings.tenants, settings.fleet)
    entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".build-", dir=entry.parent))
    try:
        built = build_bundle(
            config,
            policies=settings.policies,
            out_dir=stage / "out",
            signing_key=ensure_keypair(settings.keys).private_key,
            wasm=True,
        )
        assert built.wasm_path is not None
        shutil.copyfile(built.wasm_path, stage / _WASM_TARBALL)
        shutil.rmtree(stage / "out")
        with WasmEngine(WasmBundle.from_tarball(stage / _WASM_TARBALL), instances=1) as engine:
            (stage / _COMPILED).write_bytes(engine.compiled_module())
        for path in stage.iterdir():
            path.chmod(0o600)
        try:
            os.rename(stage, entry)
        except OSError:
            if not entry.exists():  # lost a race to a concurrent build of the same inputs: fine
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def cached_bundle(settings: EmbeddedSettings) -> tuple[WasmBundle, bool]:
    """The wasm bundle of `settings` (and whether it came from the cache), built only when its
    inputs changed since it was last built. `pdp replay` builds its candidates this way too."""
    entry = settings.state / "decide-cache" / inputs_key(settings)
    cached = (entry / _COMPILED).exists()
    if not cached:
        _build_into(settings, entry)
    bundle = WasmBundle.from_tarball(entry / _WASM_TARBALL, compiled=(entry / _COMPILED).read_bytes())
    return bundle, cached


def decide_once(settings: EmbeddedSettings, intent: Any) -> OneShot:
    """Decide `intent` in-process on the bundle of `settings`, building it only when its inputs
    changed since the last call. The decision is recorded in the decision log like any other."""
    bundle, cached = cached_bundle(settings)
    log = DecisionLog(settings.decision_log, settings.records) if settings.decision_log else None
    try:
        with WasmEngine(bundle, instances=1) as engine:
            point = DecisionPoint(engine, log, metrics=False)
            decision = point.decide(intent, DecideOptions(entry_point="cli")).to_dict()
    finally:
        if log is not None:
            log.close()
    return OneShot(decision, bundle.revision, cached)

"""One build step: policies plus validated tenant and fleet data into a signed OPA bundle.

The revision is derived from content (a hash over every policy file and the data), with the git
commit appended where there is one, so the same inputs always give the same revision and any
change to a rule or a tenant gives a new one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pdp.config import ConfigError, ConfigErrors, PolicyConfig
from pdp.opa.binary import eval_query, run_opa
from pdp.opa.bundle import BUNDLE_NAME, CURRENT_BUNDLE, CURRENT_WASM_BUNDLE, SIGNING_ALG
from pdp.schemas.errors import format_path

BUNDLE_ROOTS = ["gpupaas"]
# The documents callers query; the wasm target compiles exactly these.
ENTRYPOINTS = ("gpupaas/decision/result", "gpupaas/decision/batch")
VIOLATIONS_QUERY = "data.gpupaas.tenancy.config_violations"
# Tables computed from the policies and the data at build time, stored under data.gpupaas.index
# (policies/gpupaas/derived): a decision reads them instead of computing them on every query.
DERIVED_QUERY = "data.gpupaas.derived.tables"


@dataclass(frozen=True)
class BuiltBundle:
    path: Path
    revision: str
    signed: bool
    wasm_path: Path | None = None


def policy_files(policies: Path) -> Iterator[Path]:
    """The .rego files that belong in a bundle: rules, not their tests or sample inputs."""
    for path in sorted(policies.rglob("*.rego")):
        if path.name.endswith("_test.rego") or "samples" in path.relative_to(policies).parts:
            continue
        yield path


def git_commit(directory: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def content_revision(stage: Path, data: dict[str, Any], commit: str | None) -> str:
    digest = hashlib.sha256()
    for path in sorted(stage.rglob("*.rego")):
        digest.update(path.relative_to(stage).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    revision = digest.hexdigest()[:16]
    return f"{revision}-g{commit[:12]}" if commit else revision


def contradictions(config: PolicyConfig, stage: Path) -> list[ConfigError]:
    """Contradictions the policies themselves define (gpupaas.tenancy.config_violations), mapped
    back to the document each one is in."""
    return _check(config, stage)[0]


def _check(config: PolicyConfig, stage: Path) -> tuple[list[ConfigError], dict[str, Any]]:
    """The contradictions, and the derived tables when the policies define them: one `opa eval`
    (loading a 10,000-node fleet is most of its cost)."""
    data_file = stage.parent / "check-data.json"
    data_file.write_text(json.dumps(config.bundle_data()))
    derives = (stage / "gpupaas" / "derived").is_dir()
    query = f"[{VIOLATIONS_QUERY}, {DERIVED_QUERY}]" if derives else f"[{VIOLATIONS_QUERY}, {{}}]"
    violations, derived = eval_query(query, data_paths=[stage, data_file]) or [[], {}]
    errors = []
    for v in violations:
        file = (
            config.tenant_files.get(v.get("tenant", ""), "<tenant>")
            if v.get("document") == "tenant"
            else config.fleet_file
        )
        errors.append(ConfigError(file, format_path(v["path"]), v["message"], v["code"]))
    return sorted(errors, key=lambda e: (e.file, e.path, e.code)), derived


def _stage_policies(policies: Path, stage: Path) -> None:
    for path in policy_files(policies):
        target = stage / path.relative_to(policies)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def build_bundle(
    config: PolicyConfig,
    *,
    policies: Path,
    out_dir: Path,
    signing_key: Path | None,
    source_dir: Path | None = None,
    wasm: bool = False,
) -> BuiltBundle:
    """Validate `config` against the policies, then write `out_dir/gpupaas-<revision>.tar.gz` and
    make it the current bundle (`out_dir/gpupaas.tar.gz`, replaced atomically).

    With `wasm`, the same staged policies and data are also compiled for the in-process engine
    (`out_dir/gpupaas-<revision>.wasm.tar.gz`, current as `gpupaas.wasm.tar.gz`), so both engines
    decide from one revision.

    Raises ConfigErrors when the documents contradict themselves or the fleet.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pdp-bundle-") as tmp:
        stage = Path(tmp) / "bundle"
        stage.mkdir()
        _stage_policies(policies, stage)
        errors, derived = _check(config, stage)
        if errors:
            raise ConfigErrors(errors)

        data = config.bundle_data()
        data["gpupaas"]["index"].update(derived)
        revision = content_revision(stage, data, git_commit(source_dir or policies))
        data["gpupaas"]["bundle"] = {"revision": revision}
        (stage / "data.json").write_text(json.dumps(data, sort_keys=True, indent=1))
        manifest = {
            "revision": revision,
            "roots": BUNDLE_ROOTS,
            "metadata": {"name": BUNDLE_NAME, "fleet": config.fleet.get("name", "")},
        }
        (stage / ".manifest").write_text(json.dumps(manifest, sort_keys=True))

        target = out_dir / f"{BUNDLE_NAME}-{revision}.tar.gz"
        # Not `opa build -O=1`: it type-checks the policies against the bundle's own data, so a
        # fleet where no pool is dedicated (no `tenant` field anywhere) fails to build, and it
        # saved only 5-15% of OPA's evaluation (docs/performance.md).
        # `--bundle .` from inside the stage: OPA names policy files by the path it was given, so
        # an absolute stage path put the build's temporary folder into every member name.
        args = ["build", "--bundle", ".", "--revision", revision, "--output", str(target.resolve())]
        if signing_key is not None:
            args += ["--signing-key", str(signing_key.resolve()), "--signing-alg", SIGNING_ALG]
        run_opa(*args, cwd=stage)
        wasm_target = None
        if wasm:
            wasm_target = out_dir / f"{BUNDLE_NAME}-{revision}.wasm.tar.gz"
            entrypoints = [arg for e in ENTRYPOINTS for arg in ("--entrypoint", e)]
            wasm_args = [*entrypoints, "--bundle", ".", "--revision", revision]
            if signing_key is not None:
                # Signed like the OPA bundle: `pdp serve --wasm-bundle-url` loads it only if it verifies.
                wasm_args += ["--signing-key", str(signing_key.resolve()), "--signing-alg", SIGNING_ALG]
            run_opa(
                "build", "--target", "wasm", *wasm_args, "--output", str(wasm_target.resolve()), cwd=stage
            )
    publish(target, out_dir)
    if wasm_target is not None:
        publish(wasm_target, out_dir, CURRENT_WASM_BUNDLE)
    return BuiltBundle(target, revision, signed=signing_key is not None, wasm_path=wasm_target)


def publish(bundle: Path, out_dir: Path, name: str = CURRENT_BUNDLE) -> Path:
    """Make `bundle` the current one under `name`, atomically (a reader never sees half a file)."""
    current = out_dir / name
    tmp = current.with_suffix(".tmp")
    shutil.copyfile(bundle, tmp)
    os.replace(tmp, current)
    return current

"""The candidate policy of a replay: a git ref, a bundle file, or a folder of policies.

A folder or a git ref is built like `pdp decide` builds (pdp/oneshot.py: `opa build -t wasm`, the
compiled module cached by its inputs under <state>/decide-cache/), with the tenants and fleet of
the command line; a bundle file is a wasm bundle built by `pdp bundle build --wasm` (or OPA's
`opa build -t wasm`), loaded as it is.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pdp.engine.wasm import WasmBundle
from pdp.settings import EmbeddedSettings


class CandidateError(ValueError):
    """The candidate cannot be built or loaded; says which and why."""


@dataclass(frozen=True)
class Candidate:
    bundle: WasmBundle
    description: str  # what was given, for the report


def policies_of(folder: Path) -> Path:
    """A repository's policies/ folder, or the folder itself when it holds the policies."""
    return folder / "policies" if (folder / "policies").is_dir() else folder


def _build(settings: EmbeddedSettings, policies: Path) -> WasmBundle:
    from pdp.oneshot import cached_bundle

    try:
        bundle, _ = cached_bundle(settings.replace(policies=policies))
    except Exception as exc:  # a Rego error in the candidate, OPA failing: named, never replayed
        raise CandidateError(f"--candidate: building {policies} failed: {exc}") from exc
    return bundle


def git_tree(repo: Path, ref: str, subdir: str, into: Path) -> Path:
    """`subdir` of the tree at `ref`, exported into `into` (git archive: no checkout, no worktree)."""
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if commit.returncode != 0:
        raise CandidateError(f"--candidate {ref!r}: not a bundle file, a folder, or a git ref of {repo}")
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", commit.stdout.strip(), subdir],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise CandidateError(
            f"--candidate {ref!r}: {subdir}/ not found at that ref: {archive.stderr.decode().strip()}"
        )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / subdir


def load_candidate(
    spec: str, settings: EmbeddedSettings, *, repo: Path, policies_path: str = "policies"
) -> Candidate:
    """The candidate named by `spec`: an existing file (a wasm bundle), an existing folder (the
    policies, or a repository holding policies/), else a git ref of `repo`."""
    path = Path(spec)
    if path.is_file():
        try:
            return Candidate(WasmBundle.from_tarball(path), f"bundle {path}")
        except (OSError, tarfile.TarError, ValueError) as exc:
            raise CandidateError(f"--candidate {path}: not a wasm bundle: {exc}") from exc
        except Exception as exc:  # NoActiveBundle: a bundle without policy.wasm
            raise CandidateError(f"--candidate {path}: {exc}") from exc
    if path.is_dir():
        policies = policies_of(path)
        return Candidate(_build(settings, policies), f"policies {policies}")
    with tempfile.TemporaryDirectory(prefix="pdp-replay-") as tmp:
        policies = git_tree(repo, spec, policies_path, Path(tmp))
        return Candidate(_build(settings, policies), f"git {spec}:{policies_path}")

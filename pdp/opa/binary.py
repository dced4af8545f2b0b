"""Where the pinned `opa` binary lives and how its CLI is called."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

# Bump together with scripts/setup, which builds this version with `go install`.
OPA_VERSION = "1.22.3"

_CHECKOUT = Path(__file__).resolve().parents[2]
# Run from a checkout (an editable install): the repository's policies/ and examples/, and its
# state folders (bundles/, .keys/, var/) beside them. Installed from the wheel (pip, the image):
# the same policies/ and examples/ copied into the package (pdp/_data/, setup.py), and the state
# folders under the working directory, or $PDP_HOME when set: never inside site-packages.
IN_CHECKOUT = (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "policies").is_dir()
# Where the default documents are: policies/ and examples/.
PROJECT_ROOT = _CHECKOUT if IN_CHECKOUT else Path(__file__).resolve().parents[1] / "_data"
# Where the default state folders are: bundles/, .keys/, var/.
STATE_ROOT = _CHECKOUT if IN_CHECKOUT else Path(os.environ.get("PDP_HOME") or os.getcwd()).absolute()


class OpaNotFound(RuntimeError):
    pass


class OpaCommandFailed(RuntimeError):
    def __init__(self, args: list[str], stderr: str) -> None:
        self.stderr = stderr.strip()
        super().__init__(f"{' '.join(args[:3])} ... failed: {self.stderr}")


def find_opa() -> Path:
    """The opa binary: $PDP_OPA_BIN, the project's .bin/opa (built by scripts/setup), or PATH."""
    candidates = [os.environ.get("PDP_OPA_BIN"), str(PROJECT_ROOT / ".bin" / "opa"), shutil.which("opa")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise OpaNotFound(
        f"opa {OPA_VERSION} not found: run scripts/setup (it builds it into .bin/), "
        "or point PDP_OPA_BIN at an opa binary"
    )


def run_opa(*args: str, opa: Path | None = None, timeout: float = 120, cwd: Path | None = None) -> str:
    """Run an opa subcommand (in `cwd`) and return its stdout; raise OpaCommandFailed with its stderr."""
    argv = [str(opa or find_opa()), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)
    if proc.returncode != 0:
        raise OpaCommandFailed(argv, proc.stderr or proc.stdout)
    return proc.stdout


def eval_query(query: str, *, data_paths: list[Path], input_doc: Any = None) -> Any:
    """`opa eval` one query; returns its value, or None when undefined."""
    args = ["eval", "--format", "json", "--fail-defined=false"]
    for path in data_paths:
        args += ["--data", str(path)]
    argv = [str(find_opa()), *args, query]
    stdin = json.dumps(input_doc) if input_doc is not None else None
    if stdin is not None:
        argv[2:2] = ["--stdin-input"]
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise OpaCommandFailed(argv, proc.stderr or proc.stdout)
    out = json.loads(proc.stdout)
    results = out.get("result") or []
    if not results:
        return None
    return results[0]["expressions"][0]["value"]

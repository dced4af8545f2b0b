"""The chart deploy/helm/gpupaas rendered by a `helm` built from its Go module (scripts/build-helm)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.artifacts import cached_artifact

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "gpupaas"


def helm_binary() -> Path:
    return cached_artifact("build-helm")


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, check=False, timeout=300
    )


def template(*sets: str) -> list[dict[str, Any]]:
    """The chart's objects with `--set` values (each "key=value")."""
    argv = ["template", "gpupaas", str(CHART)]
    for s in sets:
        argv += ["--set", s]
    out = helm(*argv)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}/{meta.get('namespace', '')}/{meta['name']}"

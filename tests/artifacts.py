"""What the tests run that the project's scripts build or fetch once per pinned version into the
cache outside the checkout (scripts/build-kube, build-kueue, build-tofu, build-prometheus,
build-helm, build-gpu-config-check, fetch-gateway-crds, fetch-argocd-crds). The real component is
part of the system under test: a failed build fails the test, it does not skip it.

scripts/test runs the tests that need none of these while the builds still run, with
PDP_TEST_BUILDS_PENDING=1; a test of that first pass asking for one fails at once, naming the list in
scripts/test its file belongs in, instead of waiting for a build that is still under way."""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@cache
def cached_artifact(script: str, timeout: float = 3600) -> Path:
    """Runs scripts/<script> (a no-op once its artifact is cached) and returns the path it prints
    last: the binary or folder, relative to the checkout or absolute."""
    if os.environ.get("PDP_TEST_BUILDS_PENDING") == "1":
        raise RuntimeError(
            f"this test needs scripts/{script}, which scripts/test is still building in the background: "
            "add its file to `after_builds` in scripts/test"
        )
    out = subprocess.run(
        [str(ROOT / "scripts" / script)], capture_output=True, text=True, check=False, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"scripts/{script} failed:\n{out.stderr[-4000:]}")
    return ROOT / out.stdout.strip().splitlines()[-1]

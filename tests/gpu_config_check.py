"""NVIDIA's own config parsers (k8s-device-plugin api/config/v1, mig-parted api/spec/v1), as the
checker tools/gpu-config-check built by scripts/build-gpu-config-check."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.artifacts import cached_artifact

ROOT = Path(__file__).resolve().parents[1]


def checker() -> Path:
    return cached_artifact("build-gpu-config-check")


def check(device_plugin: Mapping[str, str], mig_parted: str | None = None) -> dict[str, Any]:
    """What the parsers make of the configs: per device plugin config its sharing strategy, MIG
    strategy and replicas, or its error; mig-parted's configs, or its error."""
    payload: dict[str, Any] = {"device_plugin": dict(device_plugin)}
    if mig_parted is not None:
        payload["mig_parted"] = mig_parted
    out = subprocess.run(
        [str(checker())], input=json.dumps(payload), capture_output=True, text=True, check=True, timeout=60
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result

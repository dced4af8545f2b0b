"""The Gateway API and Inference Extension CRDs, from their pinned Go modules
(scripts/fetch-gateway-crds), installed into a test kube-apiserver and established."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client

from tests.artifacts import cached_artifact
from tests.e2e.crds import create_crds


def crd_folder() -> Path:
    return cached_artifact("fetch-gateway-crds", timeout=900)


def install_gateway_crds(api: client.ApiClient) -> list[str]:
    """Create every CRD of the folder (keeping ones already there), wait until established."""
    return create_crds(
        api, (yaml.safe_load(path.read_text()) for path in sorted(crd_folder().glob("*.yaml"))), exist_ok=True
    )

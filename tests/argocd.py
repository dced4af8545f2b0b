"""The Argo CD example (deploy/argocd): its Applications and the policy kustomization, read as data,
and Argo CD's Application CRD from its pinned Go module (scripts/fetch-argocd-crds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.artifacts import cached_artifact

ROOT = Path(__file__).resolve().parents[1]
ARGOCD = ROOT / "deploy" / "argocd"
CHART_APP = ARGOCD / "gpupaas-chart.yaml"
CHART_OCI_APP = ARGOCD / "gpupaas-chart-oci.yaml"
POLICY_APP = ARGOCD / "gpupaas-policy.yaml"
POLICY = ARGOCD / "policy"


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def policy_objects() -> list[dict[str, Any]]:
    """The objects of the policy kustomization's resources (the rollout hook), not the generated
    ConfigMaps."""
    kustomization = load(POLICY / "kustomization.yaml")
    return [
        doc
        for resource in kustomization.get("resources", [])
        for doc in yaml.safe_load_all((POLICY / resource).read_text())
        if doc
    ]


def application_crd() -> dict[str, Any]:
    return load(cached_artifact("fetch-argocd-crds", timeout=900) / "application-crd.yaml")

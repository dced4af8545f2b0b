"""The Argo CD example (deploy/argocd): its Applications and the policy kustomization, read as data,
and Argo CD's Application CRD from its pinned Go module (scripts/fetch-argocd-crds)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

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
    out = subprocess.run(
        [str(ROOT / "scripts" / "fetch-argocd-crds")],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"scripts/fetch-argocd-crds failed:\n{out.stderr[-4000:]}")
    return load(Path(out.stdout.strip().splitlines()[-1]) / "application-crd.yaml")

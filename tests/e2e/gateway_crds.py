"""The Gateway API and Inference Extension CRDs, from their pinned Go modules
(scripts/fetch-gateway-crds), installed into a test kube-apiserver and established."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import yaml
from kubernetes import client

from .controlplane import ROOT


def crd_folder() -> Path:
    out = subprocess.run(
        [str(ROOT / "scripts" / "fetch-gateway-crds")],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if out.returncode != 0:
        raise RuntimeError(f"scripts/fetch-gateway-crds failed:\n{out.stderr[-4000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def install_gateway_crds(api: client.ApiClient) -> list[str]:
    """Create every CRD of the folder (skipping ones already there), wait until established."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted(crd_folder().glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        try:
            ext.create_custom_resource_definition(crd)
        except client.exceptions.ApiException as exc:
            if exc.status != 409:
                raise
        names.append(crd["metadata"]["name"])
    deadline = time.monotonic() + 60
    for name in names:
        while True:
            status = ext.read_custom_resource_definition(name).status
            conditions = {c.type: c.status for c in (status.conditions or [])} if status else {}
            if conditions.get("Established") == "True":
                break
            assert time.monotonic() < deadline, f"CRD {name} not established: {conditions}"
            time.sleep(0.1)
    return names

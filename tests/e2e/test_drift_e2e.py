"""`pdp audit-cluster` against the real kube-apiserver: a GPU pod bound by the real scheduler (with
the PDP's extender) runs where policy allowed it; once its node is relabelled into another region,
the audit names it as misplaced with the residency reason, and the CLI exits 3."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from typing import Any

import httpx
from kubernetes import client
from prometheus_client import REGISTRY

from pdp.substrate.kubernetes.enforcement.pod_audit import MISPLACED, audit
from tests.e2e.conftest import EmbeddedPDP, Enforcement
from tests.e2e.controlplane import ROOT, ControlPlane, free_port
from tests.e2e.test_enforcement_e2e import bound_node, create, gpu_pod, own_pool, ready  # noqa: F401

REGION = "topology.kubernetes.io/region"


def _relabel(api: client.ApiClient, node: str, region: str) -> None:
    client.CoreV1Api(api).patch_node(node, {"metadata": {"labels": {REGION: region}}})


def _mine(findings: list[Any], name: str) -> list[Any]:
    return [f for f in findings if f.namespace == "acme-prod" and f.pod == name]


def _periodic_audit_exports_the_finding(control_plane: ControlPlane, pdp_stack: EmbeddedPDP) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdp.cli", "audit-cluster", "--kubeconfig", str(control_plane.kubeconfig),
         "--state", str(pdp_stack.settings.state), "--keys", str(pdp_stack.settings.keys),
         "--tenants", str(pdp_stack.settings.tenants), "--fleet", str(pdp_stack.settings.fleet),
         "--every", "1", "--metrics-listen", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline, scraped = time.monotonic() + 120, ""
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                if re.search(r'gpupaas_pdp_drift_findings\{finding="misplaced"\} [1-9]', scraped):
                    break
            time.sleep(0.5)
        assert re.search(r'gpupaas_pdp_drift_findings\{finding="misplaced"\} [1-9]', scraped), scraped[-2000:]
        assert re.search(r"gpupaas_pdp_drift_audited_pods [1-9]", scraped)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def test_a_relabelled_node_shows_its_running_pods_as_drift(
    ready: Enforcement,  # noqa: F811
    api: client.ApiClient,
    pdp_stack: EmbeddedPDP,
    control_plane: ControlPlane,
) -> None:
    pod = gpu_pod("acme-prod", tolerations=own_pool("acme-eu"))
    create(api, pod)
    name = pod["metadata"]["name"]
    node = bound_node(api, "acme-prod", name)
    audited, findings = audit(api, pdp_stack.point)
    assert audited >= 1 and _mine(findings, name) == []  # where policy put it: no drift
    _relabel(api, node, "us-east-1")
    try:
        _, findings = audit(api, pdp_stack.point)
        (finding,) = _mine(findings, name)
        assert finding.finding == MISPLACED and finding.node == node and finding.tenant == "acme-eu"
        assert "us-east-1" in finding.reasons, finding
        done = subprocess.run(
            [sys.executable, "-m", "pdp.cli", "audit-cluster", "--kubeconfig", str(control_plane.kubeconfig),
             "--state", str(pdp_stack.settings.state), "--keys", str(pdp_stack.settings.keys),
             "--tenants", str(pdp_stack.settings.tenants), "--fleet", str(pdp_stack.settings.fleet)],
            cwd=ROOT, capture_output=True, text=True, check=False, timeout=600,
        )  # fmt: skip
        assert done.returncode == 3, done.stderr
        assert f"MISPLACED acme-prod/{name} on {node} (tenant acme-eu)" in done.stdout
        assert (REGISTRY.get_sample_value("gpupaas_pdp_drift_findings", {"finding": MISPLACED}) or 0) >= 1
        _periodic_audit_exports_the_finding(control_plane, pdp_stack)
    finally:
        _relabel(api, node, "eu-west-1")

"""Kueue in the policy run, as the project ships it: the real Kueue controller manager (built by
scripts/build-kueue, installed as its release manifests install it, its webhooks on loopback:
tests/e2e/kueue.py) with deploy/kueue/kueue-configuration.yaml (batch/v1 Jobs its only
integration), and the PDP as its AdmissionCheck: `pdp kueue-controller` under its own identity
with the ClusterRole deploy/kueue/rbac.yaml ships, applying the platform's Kueue objects (shared
flavors, the tier cohorts, workload priority classes, the check) and asking `pdp serve` over gRPC
for every Workload waiting on the check. The tenants' ClusterQueues and LocalQueues are
onboarding's (bench/fleet/onboarding.py).

Jobs, not pods: the shipped configuration integrates batch/v1 Jobs only. Kueue's pod integration
would put its own mutating webhook and a scheduling gate on every pod of the managed namespaces,
in front of the PDP's webhook, which is not how the platform runs it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from bench.harness import PY
from pdp.net.certs import issue_client_cert
from pdp.substrate.kueue import objects as kueue_objects
from pdp.substrate.kueue.version import GROUP, VERSION
from tests.e2e.controlplane import ROOT, ControlPlane
from tests.e2e.kueue import Kueue, kueue_folder

CONTROLLER_USER = "gpupaas-pdp-kueue"


def start_kueue(cp: ControlPlane, api: client.ApiClient, workdir: Path) -> Kueue:
    """Kueue installed (CRDs with its conversion webhook, its webhook configurations, RBAC) and
    serving: its webhooks answer before anything of its kinds is applied."""
    # No topology-aware scheduling (the product's ClusterQueues name no topology) and info-level
    # logs: with both, Kueue reconciled each of the fleet's nodes at every heartbeat, at debug level.
    kueue = Kueue(
        kueue_folder(), cp, workdir, feature_gates={"TopologyAwareScheduling": False}, log_level="info"
    )
    kueue.install(api)
    kueue.start()
    return kueue


def start_admission_check(
    cp: ControlPlane, api: client.ApiClient, workdir: Path, pdp_grpc: str, examples: Path
) -> None:
    """`pdp kueue-controller` as a component of the control plane (its log beside theirs, checked
    alive with them, stopped with them), asking the PDP at `pdp_grpc`."""
    kubeconfig = _grant_controller(cp, api, workdir)
    argv = [
        PY, "-m", "pdp.cli", "kueue-controller",
        "--kubeconfig", str(kubeconfig),
        "--pdp-server", pdp_grpc,
        "--tenants", str(examples / "tenants"),
        "--fleet", str(examples / "fleet.yaml"),
        # A Workload the PDP could not decide (a timeout under load) is asked again soon.
        "--retry-base-seconds", "1",
        "--retry-max-seconds", "5",
    ]  # fmt: skip
    # `python -m pdp.cli` from the checkout, as the bench's other processes run.
    cp._spawn("pdp-kueue-controller", ["env", "-C", str(ROOT), *argv])


def _grant_controller(cp: ControlPlane, api: client.ApiClient, workdir: Path) -> Path:
    """The controller's own client certificate, bound to the ClusterRole deploy/kueue ships."""
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kueue" / "rbac.yaml").read_text()))
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    name = role["metadata"]["name"]
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_cluster_role(role)
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": CONTROLLER_USER}],
        }
    )
    assert cp.ca is not None
    ident = issue_client_cert(cp.ca, workdir / "pki" / "pdp-kueue-client", CONTROLLER_USER)
    kubeconfig = workdir / "pdp-kueue.kubeconfig"
    cp._write_kubeconfig(kubeconfig, cp.workdir / "pki" / "serving", ident)
    return kubeconfig


def wait_queues_active(
    cp: ControlPlane, api: client.ApiClient, tenants: list[str], timeout: float = 120
) -> None:
    """Until every tenant's ClusterQueue is Active: its flavors exist (the platform's, applied by
    the controller at its start) and its admission check is Active (the controller marks it)."""
    custom = client.CustomObjectsApi(api)
    deadline = time.monotonic() + timeout
    waiting: dict[str, Any] = {}
    while time.monotonic() < deadline:
        cp._check_alive()
        waiting = {}
        for tenant in tenants:
            name = kueue_objects.cluster_queue_name(tenant)
            queue = custom.get_cluster_custom_object(GROUP, VERSION, "clusterqueues", name)
            conditions = (queue.get("status") or {}).get("conditions") or ()
            if not any(c["type"] == "Active" and c["status"] == "True" for c in conditions):
                waiting[name] = conditions
        if not waiting:
            return
        time.sleep(0.5)
    raise TimeoutError(
        f"ClusterQueues not Active after {timeout:.0f} s: {waiting}\n"
        f"--- kueue\n{cp.log_tail('kueue')}\n--- pdp-kueue-controller\n{cp.log_tail('pdp-kueue-controller')}"
    )

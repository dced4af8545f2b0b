"""The world of the Kueue end-to-end tests, all real processes on loopback: etcd, kube-apiserver,
kube-scheduler (with the PDP's extender), kube-controller-manager (namespace, garbage collector and
job controllers), the PDP (real OPA) with its admission webhook, Kueue, and `pdp kueue-controller`
as a subprocess asking the PDP over gRPC. GPU nodes are API objects (no kubelet): a pod bound to
a node is as far as a pod gets."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config

from pdp.api.server import PdpServer
from pdp.embedded import EmbeddedPDP
from pdp.engine.opa_http import OpaHttpEngine
from pdp.net.certs import issue_client_cert
from pdp.point import DecisionPoint
from pdp.records.log import DecisionRecord
from pdp.substrate.kubernetes import objects as kube_objects
from pdp.substrate.kubernetes.adapter import KubernetesAdapter
from pdp.substrate.kueue import objects as kueue_objects
from pdp.substrate.kueue.version import GROUP, VERSION
from pdp.substrate.labels import LOCAL_QUEUE, QUEUE_LABEL
from tests.conftest import EXAMPLES, embedded_settings
from tests.e2e.conftest import (
    NODE_STATUS,
    NODES,
    Enforcement,
    node_object,
    webhook_configuration,
)
from tests.e2e.controlplane import ROOT, ControlPlane, free_port, kube_binaries
from tests.e2e.kueue import Kueue, kueue_folder

T = TypeVar("T")
# The nodes as tests/e2e/conftest.py defines them (a copy: an enforcement test adds one to its dict).
KUEUE_NODES = dict(NODES)
CONTROLLER_USER = "gpupaas-pdp-kueue"
# A spot tenant entitled to a few H100s (the example spot tenant has A100s only, all of them in
# GPU-sharing pools), so it can borrow idle H100 quota of the standard tier and be reclaimed.
SPOT_TENANT = {
    "name": "umbrella-spot",
    "display_name": "Umbrella Batch",
    "tier": "spot",
    "isolation": "shared",
    "data_residency": "any",
    "allow_preemption": True,
    "allow_gpu_sharing": False,
    "namespaces": ["umbrella-batch"],
    "entitlements": {"H100-80GB": 2},
    "sla": {"class": "best-effort"},
}


def wait_for(
    what: str, probe: Callable[[], T | None], timeout: float = 90, logs: Callable[[], str] = str
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs()}")
        time.sleep(0.2)


class ControllerProcess:
    """`python -m pdp.cli kueue-controller`, asking the PDP at `pdp_server` over gRPC, or with
    `opa_addr` the PDP's OPA directly (as deploy/kueue runs it), recording into `state`."""

    def __init__(self, world: World, name: str, pdp_server: str, opa_addr: str = "") -> None:
        self.world, self.name, self.pdp_server, self.opa_addr = world, name, pdp_server, opa_addr
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = world.root / f"{name}.log"
        self.state = world.root / f"{name}-state"

    def start(self) -> ControllerProcess:
        examples = self.world.root / "pdp" / "examples"
        argv = [
            sys.executable, "-m", "pdp.cli", "kueue-controller",
            "--kubeconfig", str(self.world.controller_kubeconfig),
            *(["--opa-addr", self.opa_addr, "--state", str(self.state)] if self.opa_addr
              else ["--pdp-server", self.pdp_server]),
            "--tenants", str(examples / "tenants"),
            "--fleet", str(examples / "fleet.yaml"),
            "--retry-base-seconds", "1",
            "--retry-max-seconds", "2",
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:]) if self.log.exists() else ""


@dataclass
class World:
    root: Path
    cp: ControlPlane
    api: client.ApiClient
    stack: EmbeddedPDP
    kueue: Kueue
    pdp: PdpServer
    adapter: KubernetesAdapter
    fleet: dict[str, Any]
    tenants: dict[str, dict[str, Any]]
    controller_kubeconfig: Path = Path()
    controller: ControllerProcess | None = None
    extra: list[Any] = field(default_factory=list)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def logs(self) -> str:
        parts = [f"--- kueue\n{self.cp.log_tail('kueue')}"]
        if self.controller is not None:
            parts.append(f"--- {self.controller.name}\n{self.controller.tail()}")
        return "\n".join(parts)

    def run_controller(
        self, name: str = "kueue-controller", pdp_server: str = "", opa_addr: str = ""
    ) -> ControllerProcess:
        if self.controller is not None:
            self.controller.stop()
        self.controller = ControllerProcess(self, name, pdp_server or self.pdp.address, opa_addr).start()
        return self.controller

    def workload_of(self, job: Any) -> dict[str, Any] | None:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, job.metadata.namespace, "workloads")
        for wl in items["items"]:
            if any(o.get("uid") == job.metadata.uid for o in wl["metadata"].get("ownerReferences") or ()):
                return wl  # type: ignore[no-any-return]
        return None

    def namespace_tenant(self, namespace: str) -> str:
        return next(name for name, t in self.tenants.items() if namespace in t.get("namespaces", ()))

    def decisions(self, tenant: str) -> list[DecisionRecord]:
        """The PDP's decision log (every decision of the stack: webhook, extender, the check)."""
        log = self.stack.point.decision_log
        assert log is not None
        return log.query(tenant=tenant, limit=100_000)

    def cluster_queue(self, tenant: str) -> dict[str, Any]:
        name = kueue_objects.cluster_queue_name(tenant)
        return self.custom.get_cluster_custom_object(GROUP, VERSION, "clusterqueues", name)  # type: ignore[no-any-return]


def _grant_controller(world: World) -> None:
    """The controller's own identity with exactly the ClusterRole deploy/kueue/rbac.yaml ships."""
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kueue" / "rbac.yaml").read_text()))
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    rbac = client.RbacAuthorizationV1Api(world.api)
    rbac.create_cluster_role(role)
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": role["metadata"]["name"]},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": role["metadata"]["name"],
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": CONTROLLER_USER}],
        }
    )
    assert world.cp.ca is not None
    ident = issue_client_cert(world.cp.ca, world.root / "controller-client", CONTROLLER_USER)
    world.controller_kubeconfig = world.root / "controller.kubeconfig"
    world.cp._write_kubeconfig(world.controller_kubeconfig, world.cp.workdir / "pki" / "serving", ident)


def _cluster(world: World, pki: dict[str, Path], stack: ExitStack) -> None:
    """Nodes, tenant namespaces and priority classes, the PDP's webhook and the scheduler."""
    core = client.CoreV1Api(world.api)
    for name in KUEUE_NODES:
        core.create_node(node_object(name))
        core.patch_node_status(name, NODE_STATUS)
    for policy in world.tenants.values():
        for ns in kube_objects.render(policy, world.fleet)["namespaces"]:
            world.adapter.apply(ns)
    scheduling = client.SchedulingV1Api(world.api)
    # The tier catalog as onboarding applies it (same immutable value and preemptionPolicy).
    for priority_class in kube_objects.tier_catalog():
        scheduling.create_priority_class(priority_class)
    enforcement = Enforcement(world.stack, world.api, pki, world.cp)
    stack.callback(enforcement.stop)
    client.AdmissionregistrationV1Api(world.api).create_validating_webhook_configuration(
        webhook_configuration(enforcement.webhook.url, pki["ca"])
    )
    world.cp.start_scheduler(enforcement.scheduler_config())


@contextmanager
def kueue_world(root: Path, pki: dict[str, Path]) -> Iterator[World]:
    with ExitStack() as stack:
        cp = ControlPlane(kube_binaries(), root / "kube")
        stack.callback(cp.stop)
        cp.start()
        cp.start_controller_manager(controllers=("namespace", "garbagecollector", "job"))
        shutil.copytree(EXAMPLES, root / "pdp" / "examples")
        (root / "pdp" / "examples" / "tenants" / "umbrella-spot.yaml").write_text(
            yaml.safe_dump({"tenant": SPOT_TENANT})
        )
        pdp = stack.enter_context(EmbeddedPDP(embedded_settings(root / "pdp")))
        api = config.new_client_from_config(str(cp.kubeconfig))
        stack.callback(api.close)
        adapter = KubernetesAdapter(api=api)
        examples = root / "pdp" / "examples"
        fleet = yaml.safe_load((examples / "fleet.yaml").read_text())["fleet"]
        tenants = {
            doc["tenant"]["name"]: doc["tenant"]
            for doc in (yaml.safe_load(p.read_text()) for p in sorted((examples / "tenants").glob("*.yaml")))
        }
        server = PdpServer(pdp.point, listen="127.0.0.1:0", engine_ready=pdp.engine_ready).start()
        stack.callback(server.stop)
        kueue = Kueue(kueue_folder(), cp, root / "kueue")
        world = World(root, cp, api, pdp, kueue, server, adapter, fleet, tenants)
        _cluster(world, pki, stack)
        kueue.install(api)
        kueue.start()
        _grant_controller(world)
        stack.callback(lambda: world.controller.stop() if world.controller else None)
        # Each tenant's Kueue objects, as onboarding applies them (the lifecycle's "kueue" group).
        for policy in tenants.values():
            for obj in kueue_objects.tenant_objects(policy, fleet):
                adapter.apply(obj)
        world.run_controller()
        for tenant in tenants:
            wait_for(
                f"ClusterQueue of {tenant} active",
                lambda t=tenant: _active(world.cluster_queue(t)),  # type: ignore[misc]
                logs=lambda t=tenant: f"{world.cluster_queue(t).get('status')}\n{world.logs()}",  # type: ignore[misc]
            )
        yield world


def _active(obj: dict[str, Any]) -> bool:
    return any(
        c["type"] == "Active" and c["status"] == "True"
        for c in (obj.get("status") or {}).get("conditions") or ()
    )


def dead_engine_server() -> PdpServer:
    """A PDP whose engine cannot be reached (OPA at a port nothing listens on): every decision is
    a DENY with a `pdp.engine` reason."""
    point = DecisionPoint(OpaHttpEngine(f"127.0.0.1:{free_port()}"))
    return PdpServer(point, listen="127.0.0.1:0", engine_ready=lambda: False).start()


def gpu_job(
    name: str,
    pods: int,
    *,
    node_selector: dict[str, str] | None = None,
    priority_class: str = "",
) -> dict[str, Any]:
    """A batch/v1 Job in the tenant's LocalQueue: `pods` pods of one GPU each."""
    labels = {QUEUE_LABEL: LOCAL_QUEUE}
    if priority_class:
        labels[kueue_objects.PRIORITY_LABEL] = priority_class
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        # No kubelet confirms a deletion here: without this a deleted bound pod stays Terminating.
        "terminationGracePeriodSeconds": 0,
        "containers": [
            {
                "name": "train",
                "image": "registry.example/train:1",
                "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}},
            }
        ],
    }
    if node_selector:
        pod["nodeSelector"] = node_selector
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {"parallelism": pods, "completions": pods, "backoffLimit": 0, "template": {"spec": pod}},
    }

"""A fleet that lives under the real control plane, on loopback: etcd, kube-apiserver,
kube-scheduler, kube-controller-manager (namespace, garbage collector, node lifecycle and taint
eviction), KWOK keeping the trace's nodes heartbeating and the pods bound to them Running and, in
the policy run, the PDP as the chart deploys it: `pdp serve`, a process of its own deciding
in-process with the wasm engine (its bundle built from the run's tenants, where the chart's is
pulled signed from the bundle server), serving the admission webhook (on Granian: HTTP/2 and
HTTP/1.1) and the scheduler extender over TLS to the API server's and the scheduler's client
certificates (each from a CA of its own), watching the cluster through its kubeconfig, its
metrics on `/metrics`; the tenants onboarded through the product API by the lifecycle worker
(bench/fleet/onboarding.py), whose workflows apply their namespaces, quotas, limit ranges,
priority classes and Kueue queues with the real Kubernetes adapter; Kueue and the PDP as its
admission check (bench/fleet/queues.py) for the spot tasks submitted as Jobs, which the job
controller, run in this run only, turns into pods.

The scheduler-alone run is the same cluster without the PDP in the path: no webhook, no extender,
no quotas; the nodes keep their labels and the dedicated pools their taints.
"""

from __future__ import annotations

import shutil
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from bench.fleet.mapping import KWOK_ANNOTATION, Plan
from bench.fleet.niceness import favoured, niced
from bench.fleet.onboarding import onboard_all, write_examples
from bench.fleet.queues import start_admission_check, start_kueue, wait_queues_active
from bench.harness import PY, Server, start_server
from pdp.net.certs import issue_server_cert, make_ca
from pdp.substrate.kubernetes import objects as kube_objects
from pdp.substrate.kubernetes.adapter import KubernetesAdapter
from pdp.substrate.kueue.version import GROUP as KUEUE_GROUP
from pdp.substrate.kueue.version import VERSION as KUEUE_VERSION
from tests.artifacts import cached_artifact
from tests.e2e.conftest import scheduler_configuration, webhook_configuration
from tests.e2e.controlplane import ControlPlane, apiserver_metrics, kube_binaries
from tests.e2e.kueue import Kueue
from tests.ports import free_port

NOT_READY_LABEL = "node-not-ready.stage.kwok.x-k8s.io"
STAGES = Path(__file__).with_name("kwok-stages.yaml")
# resourcequota: the quotas onboarding applies hold only once their usage is counted.
CONTROLLERS = ("namespace", "garbagecollector", "resourcequota", "nodelifecycle", "taint-eviction-controller")
# The policy run's spot tasks are Kueue Jobs (bench/fleet/jobs.py): the job controller makes their pods.
PDP_CONTROLLERS = (*CONTROLLERS, "job")


@dataclass(frozen=True)
class Timing:
    """How nodes heartbeat and how fast a failed node is emptied.

    The heartbeat is a kubelet's (a 40 s Lease, which KWOK renews every quarter of it) and the
    grace the node lifecycle controller's default (50 s). A failed node here reports Ready False
    (`LivingFleet.fail_node`), so it is tainted at the controller's next pass whatever the grace;
    the grace only decides how long a heartbeat that KWOK, starved of CPU, sends late is forgiven.
    A 20 s Lease made the 1,213 nodes' renewals kube-apiserver's largest request stream (206,024
    PUTs in the whole trace's run of 12-05 08:13, 2.6 times every other request together)."""

    lease_seconds: int = 40  # KWOK renews each node's Lease every quarter of it
    grace_seconds: int = 50  # --node-monitor-grace-period
    monitor_seconds: int = 2  # --node-monitor-period: how often node health is looked at
    toleration_seconds: int = 5  # the default not-ready/unreachable tolerations
    settle_seconds: int = 60  # the longest the replay's end waits for the last pods to settle


def kwok_binary() -> Path:
    return cached_artifact("build-kwok")


@dataclass
class LivingFleet:
    root: Path
    plan: Plan
    with_pdp: bool
    timing: Timing = field(default_factory=Timing)
    stack: ExitStack = field(default_factory=ExitStack)
    cp: ControlPlane | None = None
    api: client.ApiClient | None = None
    pdp: Server | None = None
    kueue: Kueue | None = None  # the policy run's
    metrics_url: str = ""
    # The saturation run's: the scheduler starts only when `start_scheduler()` is called, so that
    # it meets every pod at once and its throughput, not the submissions', is what is measured.
    hold_scheduler: bool = False
    scheduler_qps: int = 0  # kube-scheduler's client QPS (burst twice that); 0: its default
    _scheduler_config: dict[str, Any] | None = None
    log: Callable[[str], None] = print

    def __enter__(self) -> LivingFleet:
        try:
            self._start()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    @property
    def core(self) -> client.CoreV1Api:
        assert self.api is not None
        return client.CoreV1Api(self.api)

    @property
    def batch(self) -> client.BatchV1Api:
        assert self.api is not None
        return client.BatchV1Api(self.api)

    def list_workloads(self, **kwargs: Any) -> Any:
        """Kueue's Workloads in every namespace (a list, or with watch=True the watch's stream)."""
        assert self.api is not None
        return client.CustomObjectsApi(self.api).list_cluster_custom_object(
            KUEUE_GROUP, KUEUE_VERSION, "workloads", **kwargs
        )

    def _start(self) -> None:
        t = self.timing
        cp = ControlPlane(
            kube_binaries(),
            self.root / "kube",
            apiserver_args=(
                f"--default-not-ready-toleration-seconds={t.toleration_seconds}",
                f"--default-unreachable-toleration-seconds={t.toleration_seconds}",
                # The replay submits thousands of pods a minute, as one client.
                "--max-requests-inflight=800",
                "--max-mutating-requests-inflight=400",
            ),
        )
        self.cp = cp
        self.stack.callback(cp.stop)
        cp.start()
        cp.start_controller_manager(
            controllers=PDP_CONTROLLERS if self.with_pdp else CONTROLLERS,
            extra_args=(
                f"--node-monitor-grace-period={t.grace_seconds}s",
                f"--node-monitor-period={t.monitor_seconds}s",
            ),
        )
        self.api = config.new_client_from_config(str(cp.kubeconfig))
        self.api.configuration.connection_pool_maxsize = 16
        self.stack.callback(self.api.close)
        # The tenants are onboarded while KWOK brings the nodes up: the lifecycle publishes a bundle
        # per tenant (seconds each), which need not wait for the nodes, nor they for it.
        onboarding = self._onboard_in_background() if self.with_pdp else None
        self._spawn_kwok()
        self._create_nodes()
        self._wait_nodes_ready()
        if onboarding is not None:
            onboarding.result()
            self._start_pdp()
        else:
            self._namespaces()
            self._scheduler(_plain_scheduler())

    def _spawn_kwok(self) -> None:
        assert self.cp is not None
        self.cp._spawn(
            "kwok",
            niced(
                [
                    str(kwok_binary()),
                    f"--kubeconfig={self.cp.kubeconfig}",
                    f"--config={STAGES}",
                    f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                    f"--node-lease-duration-seconds={self.timing.lease_seconds}",
                    "--cidr=10.128.0.0/10",
                    "--node-ip=10.127.0.1",
                ]
            ),
        )

    def _create_nodes(self) -> None:
        core = self.core

        def create(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
            node, status = pair
            try:
                core.create_node(node)
            except ApiException as exc:
                # 409: there already. Seen twice on a loaded machine for creates sent once (a
                # ClusterRoleBinding, a Node) whose first answer the client never got.
                if exc.status != 409:
                    raise
            core.patch_node_status(node["metadata"]["name"], status)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(create, self.plan.node_objects()))

    def _wait_nodes_ready(self, timeout: float = 180) -> None:
        """Until KWOK has initialized every node (Ready, its Lease renewed): the replay starts on a
        fleet that is up, as a real one would be."""
        assert self.cp is not None
        deadline = time.monotonic() + timeout
        want = len(self.plan.nodes)
        waiting: dict[str, str] = {}
        nodes: list[Any] = []
        while time.monotonic() < deadline:
            self.cp._check_alive()
            waiting = {}
            nodes = self.core.list_node(_request_timeout=30).items
            for n in nodes:
                conditions = (n.status.conditions if n.status else None) or ()
                ready = next((c for c in conditions if c.type == "Ready"), None)
                if ready is None or ready.status != "True":
                    waiting[str(n.metadata.name if n.metadata else "")] = (
                        f"Ready {ready.status} ({ready.reason}: {ready.message})"
                        if ready
                        else "no Ready condition"
                    )
            if not waiting and len(nodes) == want:
                return
            time.sleep(1)
        # The nodes and their Ready conditions say where to look (a node failed by an earlier run in
        # the same etcd stayed Ready False while KWOK patched it every second: __main__ now refuses
        # a work folder holding a run).
        stuck = "; ".join(f"{name}: {why}" for name, why in sorted(waiting.items())[:10])
        raise TimeoutError(
            f"{len(nodes) - len(waiting)} of {want} nodes Ready after {timeout:.0f} s; not Ready: {stuck}\n"
            f"{self.cp.log_tail('kwok')}"
        )

    def _namespaces(self) -> None:
        """The scheduler-alone run's tenants: their namespaces and the tier catalog's priority
        classes the pods name, and nothing of the policy (no quota, limit or queue)."""
        assert self.api is not None
        adapter = KubernetesAdapter(api=self.api)
        for priority_class in kube_objects.tier_catalog():
            adapter.apply(priority_class)
        for policy in self.plan.policies.values():
            for obj in kube_objects.render(policy, self.plan.fleet)["namespaces"]:
                adapter.apply(obj)

    def _onboard_in_background(self) -> Future[None]:
        """The policy run's tenants: the lifecycle onboards them through the product API
        (bench/fleet/onboarding.py); a thread of its own, stopped with the fleet."""
        assert self.cp is not None and self.api is not None
        cp, api, plan = self.cp, self.api, self.plan
        stop = threading.Event()
        executor = ThreadPoolExecutor(1, thread_name_prefix="onboarding")
        self.stack.callback(executor.shutdown, wait=True)
        self.stack.callback(stop.set)  # first (callbacks run newest first): the wait above ends

        def onboard() -> None:
            # Kueue serving first (its webhooks validate the queues onboarding applies).
            self.kueue = start_kueue(cp, api, self.root / "kueue")
            onboard_all(
                self.root / "lifecycle", cp.kubeconfig, plan.fleet, plan.policies, self.log, stop=stop
            )

        return executor.submit(onboard)

    def _start_pdp(self) -> None:
        cp = self.cp
        assert cp is not None and self.api is not None
        assert cp.components_ca is not None and cp.scheduler_client is not None
        assert cp.webhook_clients_ca is not None
        home = self.root / "pdp"
        examples = write_examples(home / "examples", self.plan.fleet, self.plan.policies)
        pki_dir = self.root / "pki"
        ca = make_ca(pki_dir)
        serving = issue_server_cert(ca, pki_dir / "pdp", ["127.0.0.1", "localhost"])
        webhook, extender, metrics = free_port(), free_port(), free_port()
        cert, key = str(serving.cert), str(serving.key)
        # As the chart ships it: the in-process wasm engine, the webhook on Granian (HTTP/2)
        # behind a client CA that signs kube-apiserver's alone, a webhook process per CPU (the
        # chart's `auto`; /metrics counts them all, docs/metrics.md).
        argv = [PY, "-m", "pdp.cli", "serve", "--engine", "wasm", "--webhook-workers", "auto"]
        argv += ["--tenants", str(examples / "tenants")]
        argv += ["--fleet", str(examples / "fleet.yaml"), "--keys", str(home / "keys")]
        argv += ["--bundles", str(home / "bundles"), "--state", str(home / "state")]
        grpc = f"127.0.0.1:{free_port()}"
        argv += ["--listen", grpc, "--kubeconfig", str(cp.kubeconfig)]
        argv += ["--webhook-listen", f"127.0.0.1:{webhook}", "--webhook-cert", cert, "--webhook-key", key]
        argv += ["--webhook-client-ca", str(cp.webhook_clients_ca.cert)]
        argv += ["--extender-listen", f"127.0.0.1:{extender}", "--extender-cert", cert, "--extender-key", key]
        argv += [
            "--extender-client-ca",
            str(cp.components_ca.cert),
            "--extender-client-names",
            "kube-scheduler",
        ]
        argv += ["--metrics-listen", f"127.0.0.1:{metrics}"]
        # The bench's own way to start a server: its log beside the control plane's, its OPA child
        # found for the accounting, stopped with the fleet.
        self.pdp = start_server("pdp", favoured(argv), "pdp serving on", cp.workdir)
        self.stack.callback(self.pdp.stop)
        self.metrics_url = f"http://127.0.0.1:{metrics}/metrics"
        client.AdmissionregistrationV1Api(self.api).create_validating_webhook_configuration(
            webhook_configuration(f"https://127.0.0.1:{webhook}", ca.cert)
        )
        # The PDP as Kueue's admission check, asking `pdp serve` over gRPC; the spot tenants'
        # queues admit nothing until their check is Active.
        start_admission_check(cp, self.api, self.root / "kueue", grpc, examples)
        wait_queues_active(cp, self.api, sorted(self.plan.policies))
        self._scheduler(
            scheduler_configuration(f"https://127.0.0.1:{extender}", ca.cert, cp.scheduler_client)
        )

    def _scheduler(self, configuration: dict[str, Any]) -> None:
        if self.scheduler_qps:
            # kube-scheduler's client allows 50 requests/s (burst 100) by default: a binding and
            # each status update of a pod it could not place are one each (the bench's --scheduler-qps).
            qps = self.scheduler_qps
            configuration = {**configuration, "clientConnection": {"qps": qps, "burst": 2 * qps}}
        self._scheduler_config = configuration
        if not self.hold_scheduler:
            self.start_scheduler()

    def start_scheduler(self) -> None:
        """Starts kube-scheduler (held until now when `hold_scheduler`); once only."""
        assert self.cp is not None and self._scheduler_config is not None
        configuration, self._scheduler_config = self._scheduler_config, None
        if configuration is not None:
            self.cp.start_scheduler(configuration)

    def metrics(self) -> str:
        """The PDP's Prometheus metrics, as scraped (empty for the scheduler-alone run)."""
        if not self.metrics_url:
            return ""
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return str(response.read().decode())

    def apiserver_metrics(self) -> str:
        """kube-apiserver's own Prometheus metrics: where its CPU went in this run."""
        assert self.api is not None
        return apiserver_metrics(self.api)

    def fail_node(self, node: str) -> None:
        """The node fails: KWOK's node-not-ready stage makes it report Ready False (its Lease is
        still renewed, as a kubelet on a machine whose GPUs failed would), so the node lifecycle
        controller taints it not-ready:NoExecute and taint eviction empties it."""
        self.core.patch_node(node, {"metadata": {"labels": {NOT_READY_LABEL: "true"}}})

    def processes(self) -> dict[str, int]:
        """Component -> pid, for CPU and memory accounting."""
        assert self.cp is not None
        pids = {name: proc.pid for name, proc in self.cp.procs.items()}
        if self.pdp is not None:
            pids.update(self.pdp.pids())  # pdp serve and its OPA
        return pids

    def copy_logs(self, into: Path) -> None:
        assert self.cp is not None
        into.mkdir(parents=True, exist_ok=True)
        for log in self.cp.workdir.glob("*.log"):
            shutil.copy(log, into / log.name)


def _plain_scheduler() -> dict[str, Any]:
    """The shipped scheduler configuration without the PDP's extender."""
    doc = scheduler_configuration("http://unused")
    doc.pop("extenders", None)
    return doc

"""A real Kubernetes control plane on loopback for the end-to-end tests, the way
controller-runtime's envtest runs one: etcd and kube-apiserver (and, on request, kube-scheduler
and a kube-controller-manager running only the namespace and garbage collector controllers) as
local processes built from module sources by scripts/build-kube. No kubelet: nodes are API objects.

kube-apiserver runs with the shipped admission configuration
(deploy/kubernetes/control-plane/): it presents a client certificate (CN kube-apiserver) to every
webhook, and kube-scheduler's configuration can present another (CN kube-scheduler) to the
extender; each from a client CA of its own, as scripts/make-certs issues them
(`webhook_clients_ca` signs kube-apiserver's alone, `components_ca` kube-scheduler's), which the
PDP's fronts require."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pdp.net.certs import CertPair, issue_client_cert, make_ca
from tests.artifacts import cached_artifact
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def kube_binaries() -> Path:
    """The folder with etcd, kube-apiserver, kube-scheduler and kube-controller-manager, built (once)
    by scripts/build-kube."""
    return cached_artifact("build-kube")


@dataclass
class ControlPlane:
    bin_dir: Path
    workdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_port: int = 0
    kubeconfig: Path = Path()
    ca: CertPair | None = None
    # The CAs of the client certificates kube-apiserver presents to webhooks
    # (`webhook_clients_ca`: `apiserver_client` alone) and kube-scheduler to its extender
    # (`components_ca`: `scheduler_client`).
    webhook_clients_ca: CertPair | None = None
    components_ca: CertPair | None = None
    apiserver_client: CertPair | None = None
    scheduler_client: CertPair | None = None
    # More kube-apiserver flags (the living fleet shortens the default taint tolerations).
    apiserver_args: tuple[str, ...] = ()

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.workdir / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def start(self) -> ControlPlane:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._start_etcd()
        self._start_apiserver()
        return self

    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=error",
            ],
        )

    def _start_apiserver(self) -> None:
        certs = self.workdir / "pki"
        self.ca = make_ca(certs, "e2e-client-ca")
        admin = issue_client_cert(self.ca, certs / "admin", "e2e-admin", ("system:masters",))
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (certs / "sa.key").write_bytes(
            sa_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (certs / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self.api_port = free_port()
        serving = certs / "serving"
        admission = self._admission_configuration(certs)
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--cert-dir={serving}",
                f"--client-ca-file={self.ca.cert}",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={certs / 'sa.pub'}",
                f"--service-account-signing-key-file={certs / 'sa.key'}",
                "--authorization-mode=RBAC",
                # No controller-manager or kubelet runs: nothing creates default service accounts, and
                # nothing would ever lift the not-ready taint TaintNodesByCondition puts on new nodes.
                "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
                "--enable-priority-and-fairness=false",
                # The kubernetes Service endpoint cannot point at loopback; envtest does the same.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                f"--admission-control-config-file={admission}",
                *self.apiserver_args,
            ],
        )
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self._wait_for_serving_cert(serving)
        self._write_kubeconfig(self.kubeconfig, serving, admin)
        self._wait_ready()

    def _admission_configuration(self, certs: Path) -> Path:
        """The shipped admission configuration and webhook kubeconfig with this host's paths; its
        user applies to every webhook host ('*': the webhooks here listen on ports chosen at run
        time, the shipped name is the pdp Service's)."""
        self.components_ca = make_ca(certs / "components", "e2e-components-client-ca")
        self.webhook_clients_ca = make_ca(certs / "webhook-clients", "e2e-webhook-client-ca")
        self.apiserver_client = issue_client_cert(
            self.webhook_clients_ca, certs / "webhook-clients" / "apiserver", "kube-apiserver"
        )
        self.scheduler_client = issue_client_cert(
            self.components_ca, certs / "components" / "scheduler", "kube-scheduler"
        )
        shipped = ROOT / "deploy" / "kubernetes" / "control-plane"
        kubeconfig = yaml.safe_load((shipped / "webhook-client.kubeconfig").read_text())
        (user,) = kubeconfig["users"]
        user["name"] = "*"
        user["user"] = {
            "client-certificate": str(self.apiserver_client.cert),
            "client-key": str(self.apiserver_client.key),
        }
        (certs / "webhook-client.kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        admission = yaml.safe_load((shipped / "admission-configuration.yaml").read_text())
        for plugin in admission["plugins"]:
            plugin["configuration"]["kubeConfigFile"] = str(certs / "webhook-client.kubeconfig")
        path = certs / "admission-configuration.yaml"
        path.write_text(yaml.safe_dump(admission))
        return path

    def _wait_for_serving_cert(self, serving: Path, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not list(serving.glob("*.crt")):
            self._check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"kube-apiserver wrote no serving certificate\n{self.log_tail('kube-apiserver')}"
                )
            time.sleep(0.1)

    def _write_kubeconfig(self, path: Path, serving: Path, user: CertPair) -> None:
        server_ca = next(iter(sorted(serving.glob("*.crt"))))
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "e2e",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.api_port}",
                        "certificate-authority": str(server_ca),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {"client-certificate": str(user.cert), "client-key": str(user.key)},
                }
            ],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
            "current-context": "e2e",
        }
        path.write_text(yaml.safe_dump(config))

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.log_tail(name)}")

    def _wait_ready(self, timeout: float = 120) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(str(self.kubeconfig))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                # The default namespace appears once the bootstrap controllers have run.
                client.CoreV1Api(api).read_namespace("default", _request_timeout=2)
                api.close()
                return
            except Exception as exc:
                last = str(exc)[:300]
            time.sleep(0.2)
        api.close()
        raise TimeoutError(f"kube-apiserver not ready: {last}\n{self.log_tail('kube-apiserver')}")

    def start_scheduler(self, config: dict[str, Any], name: str = "kube-scheduler") -> None:
        """kube-scheduler with `config` (a KubeSchedulerConfiguration), talking to this API server;
        `name` tells a second one (with its own profiles' schedulerNames) apart."""
        config = {
            **config,
            # The configuration's own client settings (qps, burst) kept, pointed at this server.
            "clientConnection": {**config.get("clientConnection", {}), "kubeconfig": str(self.kubeconfig)},
            "leaderElection": {"leaderElect": False},
        }
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        self._spawn(
            name,
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--config={path}",
                "--secure-port=0",
                "-v=2",
            ],
        )

    # What kube-controller-manager runs here by default: the namespace controller (finishes
    # namespace deletion: empties a Terminating namespace, then drops its finalizer) and the garbage
    # collector (deletes dependents by ownerReferences). Nothing that needs a kubelet, a cloud or
    # service accounts. The Kueue tests add the job controller (creates a Job's pods).
    CONTROLLERS = ("namespace", "garbagecollector")
    # controller -> the bootstrap ClusterRole its service account would have
    CONTROLLER_ROLES: ClassVar[dict[str, str]] = {
        "namespace": "system:controller:namespace-controller",
        "garbagecollector": "system:controller:generic-garbage-collector",
        "job": "system:controller:job-controller",
        # The Helm release (tests/e2e/test_helm_release_e2e.py): Deployments make ReplicaSets make pods.
        "deployment": "system:controller:deployment-controller",
        "replicaset": "system:controller:replicaset-controller",
        # The living fleet (bench/fleet): NotReady nodes tainted, their pods evicted.
        "nodelifecycle": "system:controller:node-controller",
        "resourcequota": "system:controller:resourcequota-controller",
        "taint-eviction-controller": "system:controller:node-controller",
    }

    def start_controller_manager(
        self,
        timeout: float = 60,
        controllers: tuple[str, ...] = CONTROLLERS,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """kube-controller-manager with only `controllers`, under its own identity (no service
        account credentials: the token controller does not run) with exactly those controllers'
        roles, serving nothing (no secure port), without leader election."""
        from kubernetes import client, config

        certs = self.workdir / "pki"
        assert self.ca is not None, "start() the API server first"
        user = "system:kube-controller-manager"
        ident = issue_client_cert(self.ca, certs / "kube-controller-manager", user)
        kubeconfig = self.workdir / "kube-controller-manager.kubeconfig"
        self._write_kubeconfig(kubeconfig, self.workdir / "pki" / "serving", ident)
        api = config.new_client_from_config(str(self.kubeconfig))
        try:
            rbac = client.RbacAuthorizationV1Api(api)
            # The bootstrap roles these controllers get as service accounts, granted to the user
            # instead: the role bound to system:kube-controller-manager covers the manager itself,
            # Kubernetes gives the controllers' own work to their service accounts.
            for role in sorted({self.CONTROLLER_ROLES[c] for c in controllers}):
                binding = client.V1ClusterRoleBinding(
                    metadata=client.V1ObjectMeta(name=f"e2e:{role}"),
                    role_ref=client.V1RoleRef(
                        api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role
                    ),
                    subjects=[
                        client.RbacV1Subject(api_group="rbac.authorization.k8s.io", kind="User", name=user)
                    ],
                )
                try:
                    rbac.create_cluster_role_binding(binding)
                except client.ApiException as exc:
                    # A create whose answer was lost can be retried by the client: already there.
                    if exc.status != 409:
                        raise
        finally:
            api.close()
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--controllers={','.join(controllers)}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "-v=2",
                *extra_args,
            ],
        )
        self._wait_controllers(timeout)

    def _wait_controllers(self, timeout: float) -> None:
        """Until a namespace deleted now is gone: the namespace controller is working (it serves no
        health endpoint here, and its log lines are no contract)."""
        from kubernetes import client, config

        api = config.new_client_from_config(str(self.kubeconfig))
        core = client.CoreV1Api(api)
        probe = "e2e-controller-probe"
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=probe)))
            core.delete_namespace(probe)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self._check_alive()
                try:
                    core.read_namespace(probe, _request_timeout=2)
                except client.exceptions.ApiException as exc:
                    if exc.status == 404:
                        return
                    raise
                time.sleep(0.2)
        finally:
            api.close()
        raise TimeoutError(
            f"kube-controller-manager never finished deleting a namespace\n"
            f"{self.log_tail('kube-controller-manager')}"
        )

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0", "false")


def apiserver_metrics(api: Any) -> str:
    """kube-apiserver's own Prometheus metrics, read with `api`'s (a kubernetes ApiClient's)
    credentials: its requests by verb and resource, its calls of each admission webhook."""
    headers = {"Accept": "text/plain"}
    api.update_params_for_auth(headers, [], ["BearerToken"], "/metrics", "GET", None)
    url = f"{api.configuration.host}/metrics"
    return str(api.call_api("GET", url, header_params=headers, _request_timeout=30).read().decode())

"""Kueue in the end-to-end control plane: the controller manager built by scripts/build-kueue from
the Go module proxy, installed the way its release manifests install it (its CRDs with the
conversion webhook, its mutating and validating webhook configurations for its own kinds and
batch/v1 Jobs, its manager ClusterRole), but on loopback: webhooks called at https://127.0.0.1
with a CA made here, metrics and health on loopback, no certificate rotation, no leader election,
its own client certificate bound to its own role.

Kueue reads the metrics serving certificate from a fixed path (/etc/kueue/metrics/certs) when it
does not manage certificates itself; the process gets a private view of /etc (a mount namespace
with an overlay holding that folder), so nothing on the machine is written."""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from pdp.net.certs import CertPair, issue_client_cert, issue_server_cert, make_ca
from tests.artifacts import cached_artifact
from tests.e2e.controlplane import ROOT, ControlPlane, free_port
from tests.e2e.crds import create_crds

KUEUE_USER = "kueue-controller-manager"
NAMESPACE = "kueue-system"


def kueue_folder() -> Path:
    """The folder with the kueue binary and the module's config, built (once) by scripts/build-kueue."""
    return cached_artifact("build-kueue")


def _private_etc(upper: Path, work: Path, argv: list[str]) -> list[str]:
    """argv run in its own mount namespace where /etc is an overlay whose upper layer is `upper`."""
    namespace = ["unshare", "-m", "--propagation", "private"] if os.geteuid() == 0 else ["unshare", "-Urm"]
    script = 'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc && shift 2 && exec "$@"'
    return [*namespace, "--", "sh", "-c", script, "sh", str(upper), str(work), *argv]


def _conversion_crds(folder: Path) -> set[str]:
    """The CRDs Kueue's kustomization gives a conversion webhook (its enabled patches)."""
    kustomization = yaml.safe_load((folder / "config" / "crd" / "kustomization.yaml").read_text())
    names = set()
    for patch in kustomization.get("patches") or ():
        doc = yaml.safe_load((folder / "config" / "crd" / patch["path"]).read_text())
        if (doc.get("spec") or {}).get("conversion"):
            names.add(doc["metadata"]["name"])
    return names


def install_crds(api: client.ApiClient, folder: Path, conversion: dict[str, str] | None = None) -> None:
    """Kueue's CRDs from the module (config/components/crd/bases), established. `conversion`: the
    webhook clientConfig of the CRDs Kueue converts between versions; without it (no Kueue
    running, objects stored and validated by the API server alone) they convert nothing."""
    converted = _conversion_crds(folder) if conversion else set()
    crds = [
        yaml.safe_load(path.read_text())
        for path in sorted((folder / "config" / "crd" / "bases").glob("*.yaml"))
    ]
    for crd in crds:
        if crd["metadata"]["name"] in converted:
            crd["spec"]["conversion"] = {
                "strategy": "Webhook",
                "webhook": {"clientConfig": conversion, "conversionReviewVersions": ["v1"]},
            }
    create_crds(api, crds)


@dataclass
class Kueue:
    folder: Path
    cp: ControlPlane
    workdir: Path
    webhook_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    ca: CertPair | None = None
    # Beside the configuration's own (a user's choices, e.g. the fleet's: no topology-aware
    # scheduling, which reconciles every node as its heartbeat changes it).
    feature_gates: dict[str, bool] = field(default_factory=dict)
    log_level: str = "2"  # --zap-log-level: "info", "debug" or N > 0 (debug level N)
    _metrics_token: str | None = field(default=None, repr=False)

    @property
    def webhook_url(self) -> str:
        return f"https://127.0.0.1:{self.webhook_port}"

    def _ca_bundle(self) -> str:
        assert self.ca is not None
        return base64.b64encode(self.ca.cert.read_bytes()).decode()

    def install(self, api: client.ApiClient) -> None:
        """Namespace, RBAC, CRDs and webhook configurations; the API server calls the webhooks at
        the loopback URL from now on (and fails closed until Kueue serves them)."""
        pki = self.workdir / "pki"
        self.ca = make_ca(pki, "kueue-webhook-ca")
        serving = issue_server_cert(self.ca, pki / "serving", ["127.0.0.1"])
        for folder in (self.workdir / "webhook-certs", self.workdir / "etc" / "kueue" / "metrics" / "certs"):
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(serving.cert, folder / "tls.crt")
            shutil.copy(serving.key, folder / "tls.key")
        core = client.CoreV1Api(api)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
        self._rbac(api)
        self._crds(api)
        self._webhooks(api)

    def _cluster_role(
        self, api: client.ApiClient, release_file: str, name: str, subject: dict[str, str]
    ) -> None:
        """The ClusterRole of Kueue's release `config/rbac/<release_file>`, named `name`, bound to
        `subject`."""
        rbac = client.RbacAuthorizationV1Api(api)
        role = yaml.safe_load((self.folder / "config" / "rbac" / release_file).read_text())
        role["metadata"]["name"] = name
        rbac.create_cluster_role(role)
        ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name}
        rbac.create_cluster_role_binding(
            {"metadata": {"name": f"{name}binding"}, "roleRef": ref, "subjects": [subject]}
        )

    def _rbac(self, api: client.ApiClient) -> None:
        """The manager's ClusterRoles (its own, and the one that lets it ask the API server who
        scrapes its metrics) and its Role on secrets of its namespace, bound to its user."""
        rbac = client.RbacAuthorizationV1Api(api)
        user = {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": KUEUE_USER}
        subject = [user]
        self._cluster_role(api, "role.yaml", "kueue-manager-role", user)
        self._cluster_role(api, "metrics_auth_role.yaml", "kueue-metrics-auth-role", user)
        secrets = yaml.safe_load((self.folder / "config" / "rbac" / "manager_secrets_role.yaml").read_text())
        secrets["metadata"] = {"name": "kueue-manager-secrets-role", "namespace": NAMESPACE}
        rbac.create_namespaced_role(NAMESPACE, secrets)
        ref = {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "kueue-manager-secrets-role"}
        rbac.create_namespaced_role_binding(
            NAMESPACE,
            {"metadata": {"name": "kueue-manager-secrets-rolebinding"}, "roleRef": ref, "subjects": subject},
        )

    def _crds(self, api: client.ApiClient) -> None:
        conversion = {"url": f"{self.webhook_url}/convert", "caBundle": self._ca_bundle()}
        install_crds(api, self.folder, conversion)

    def _webhooks(self, api: client.ApiClient) -> None:
        """Kueue's webhook configurations, kept to its own kinds and batch/v1 Jobs (the only
        integration configured), pointed at the loopback URL."""
        admission = client.AdmissionregistrationV1Api(api)
        for doc in yaml.safe_load_all((self.folder / "config" / "webhooks.yaml").read_text()):
            if not doc:
                continue
            kept = []
            for hook in doc.get("webhooks") or ():
                groups = {g for rule in hook.get("rules") or () for g in rule.get("apiGroups") or ()}
                if not groups <= {"kueue.x-k8s.io", "batch"}:
                    continue
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {"url": f"{self.webhook_url}{path}", "caBundle": self._ca_bundle()}
                kept.append(hook)
            doc["webhooks"] = kept
            doc["metadata"]["name"] = f"kueue-{doc['metadata']['name']}"
            if doc["kind"] == "MutatingWebhookConfiguration":
                admission.create_mutating_webhook_configuration(doc)
            else:
                admission.create_validating_webhook_configuration(doc)

    def configuration(self) -> dict[str, Any]:
        """Kueue's release Configuration (the kueue-manager-config ConfigMap its manifests install:
        client QPS 50, burst 100, five Workload and Job reconcilers at once) with
        deploy/kueue/kueue-configuration.yaml merged into it, as that file asks of its user, and
        this process's loopback addresses."""
        settings: dict[str, Any] = yaml.safe_load(
            (self.folder / "config" / "manager-config.yaml").read_text()
        )
        settings.update(yaml.safe_load((ROOT / "deploy" / "kueue" / "kueue-configuration.yaml").read_text()))
        settings.update(
            namespace=NAMESPACE,
            health={"healthProbeBindAddress": f"127.0.0.1:{self.health_port}"},
            metrics={"bindAddress": f"127.0.0.1:{self.metrics_port}"},
            webhook={
                "host": "127.0.0.1",
                "port": self.webhook_port,
                "certDir": str(self.workdir / "webhook-certs"),
            },
            leaderElection={"leaderElect": False},
            internalCertManagement={"enable": False},
            # The on-demand visibility API server would bind a fixed port on every address.
            featureGates={"VisibilityOnDemand": False, **self.feature_gates},
        )
        return settings

    def metrics_token(self, api: client.ApiClient) -> str:
        """A token of a service account bound to Kueue's release metrics-reader role, which Kueue
        has the API server review when its /metrics is asked (as Prometheus would in a cluster)."""
        if self._metrics_token is None:
            account = "kueue-metrics-scraper"
            core = client.CoreV1Api(api)
            core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": account}})
            scraper = {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
            self._cluster_role(api, "metrics_reader_role.yaml", "kueue-metrics-reader", scraper)
            issued = core.create_namespaced_service_account_token(
                account, NAMESPACE, {"spec": {"expirationSeconds": 3600}}
            )
            self._metrics_token = str(issued.status.token)
        return self._metrics_token

    @property
    def metrics_address(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    @property
    def metrics_url(self) -> str:
        return f"https://{self.metrics_address}/metrics"

    def metrics(self, api: client.ApiClient) -> str:
        """Kueue's /metrics over TLS with the metrics reader's token."""
        assert self.ca is not None
        headers = {"Authorization": f"Bearer {self.metrics_token(api)}"}
        trust = ssl.create_default_context(cafile=str(self.ca.cert))
        with urllib.request.urlopen(
            urllib.request.Request(self.metrics_url, headers=headers), timeout=10, context=trust
        ) as r:
            return str(r.read().decode())

    def start(self, timeout: float = 120) -> None:
        assert self.cp.ca is not None, "start the control plane first"
        ident = issue_client_cert(self.cp.ca, self.workdir / "pki" / "kueue-client", KUEUE_USER)
        kubeconfig = self.workdir / "kueue.kubeconfig"
        self.cp._write_kubeconfig(kubeconfig, self.cp.workdir / "pki" / "serving", ident)
        config_file = self.workdir / "kueue-config.yaml"
        config_file.write_text(yaml.safe_dump(self.configuration()))
        work = self.workdir / "etc-work"
        work.mkdir(exist_ok=True)
        argv = [
            str(self.folder / "kueue"),
            f"--config={config_file}",
            f"--kubeconfig={kubeconfig}",
            f"--zap-log-level={self.log_level}",
        ]
        self.cp._spawn("kueue", _private_etc(self.workdir / "etc", work, argv))
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Healthy, and its webhooks answer the API server (a dry-run create goes through them)."""
        deadline = time.monotonic() + timeout
        last = ""
        api = config.new_client_from_config(str(self.cp.kubeconfig))
        custom = client.CustomObjectsApi(api)
        probe = {
            "apiVersion": "kueue.x-k8s.io/v1beta2",
            "kind": "ResourceFlavor",
            "metadata": {"name": "e2e-webhook-probe"},
        }
        try:
            while time.monotonic() < deadline:
                self.cp._check_alive()
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.health_port}/readyz", timeout=2
                    ) as r:
                        if r.status == 200:
                            custom.create_cluster_custom_object(
                                "kueue.x-k8s.io", "v1beta2", "resourceflavors", probe, dry_run="All"
                            )
                            return
                except (OSError, ssl.SSLError, client.exceptions.ApiException) as exc:
                    last = str(exc)[:300]
                time.sleep(0.3)
        finally:
            api.close()
        raise TimeoutError(f"kueue not ready: {last}\n{self.cp.log_tail('kueue')}")

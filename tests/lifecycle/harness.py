"""A lifecycle worker as a real subprocess (`python -m pdp.cli lifecycle worker`), which tests can
kill -9 (the whole process group: worker and its OPA, as a machine crash would) and restart."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client, config

from pdp.integrity.signing import load_key, public_pem
from pdp.lifecycle.bearer_tokens import new_token
from tests.e2e.controlplane import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
FINAL = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


def tenant_doc(base: str, name: str, namespaces: list[str], **changes: Any) -> dict[str, Any]:
    """An example tenant document under a fresh name (the bundle already holds the originals)."""
    doc = yaml.safe_load((EXAMPLES / "tenants" / f"{base}.yaml").read_text())
    doc["tenant"].update(name=name, namespaces=namespaces, **changes)
    return doc  # type: ignore[no-any-return]


class Worker:
    def __init__(
        self,
        root: Path,
        database_url: str = "",
        kubeconfig: Path | None = None,
        examples: Path | None = None,
        bundles: bool = True,
        *,
        listen_host: str = "127.0.0.1",
        ca: Path | None = None,
        flags: tuple[str, ...] = (),
        **opts: str,
    ) -> None:
        """`examples`: the folder of tenant documents and fleet the worker reads (default: a copy
        of the repository's under `root`); `bundles`: pass --bundles (else the worker's default).
        `opts` become worker options (tls_cert="..." -> --tls-cert ...), `flags` bare flags
        ("insecure" -> --insecure); with --tls-cert the API is reached over https, trusting `ca`."""
        self.root = root
        self.bundles = bundles
        self.examples = examples or root / "examples"
        if examples is None and not (root / "examples").exists():
            shutil.copytree(EXAMPLES, root / "examples")
        self.database_url = database_url
        self.kubeconfig = kubeconfig
        self.opts = opts
        self.flags = flags
        # As the product issues them (never starting with "-", which `--token` would read as an
        # option: one secrets.token_urlsafe in 64 did, and failed the incident CLI test).
        self.admin_token = new_token()
        self.port = free_port()
        self.listen_host = listen_host
        self.ca = ca
        self.url = f"{'https' if 'tls_cert' in opts else 'http'}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.marker = root / "paused"
        self.starts = 0

    def start(self, env: Mapping[str, str] | None = None, timeout: float = 60) -> Worker:
        self.marker.unlink(missing_ok=True)
        argv = [
            sys.executable, "-m", "pdp.cli", "lifecycle", "worker",
            "--tenants", str(self.examples / "tenants"),
            "--fleet", str(self.examples / "fleet.yaml"),
            "--keys", str(self.root / "keys"),
            "--state", str(self.root / "state"),
            "--listen", f"{self.listen_host}:{self.port}",
        ]  # fmt: skip
        if self.bundles:
            argv += ["--bundles", str(self.root / "bundles")]
        if self.database_url:
            argv += ["--database-url", self.database_url]
        if self.kubeconfig:
            argv += ["--kubeconfig", str(self.kubeconfig)]
        # Checkpoints outside the state folder, where an auditor keeps them (`audit_verify_args`).
        opts = {"audit_checkpoints": self.audit_sink, **self.opts}
        for k, v in opts.items():
            argv += [f"--{k.replace('_', '-')}", v]
        argv += [f"--{flag}" for flag in self.flags]
        full_env = {
            **os.environ,
            "PDP_LIFECYCLE_ADMIN_TOKEN": self.admin_token,
            "PDP_LIFECYCLE_PAUSE_MARKER": str(self.marker),
            **(env or {}),
        }
        self.starts += 1
        log = (self.root / f"worker-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5, verify=self.verify()).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"worker did not come up:\n{self.log()}")

    def log(self) -> str:
        return (self.root / f"worker-{self.starts}.log").read_text(errors="replace")[-4000:]

    def kill9(self) -> None:
        """SIGKILL the worker's process group: no cleanup runs, as in a crash."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def wait_paused(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        # Not only there but written: the step creates the file, then writes its name.
        while not (self.marker.exists() and self.marker.read_text()):
            assert self.proc is not None and self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, f"the worker never paused:\n{self.log()}"
            time.sleep(0.05)
        return self.marker.read_text()

    def verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=str(self.ca)) if self.ca else True

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
            timeout=60,
            verify=self.verify(),
        )

    def wait_workflow(self, workflow_id: str, timeout: float = 60) -> dict[str, Any]:
        with self.client() as c:
            deadline = time.monotonic() + timeout
            while True:
                wf: dict[str, Any] = c.get(f"/v1/workflows/{workflow_id}").json()
                if wf.get("status") in FINAL:
                    return wf
                assert time.monotonic() < deadline, f"{workflow_id} still {wf}:\n{self.log()}"
                time.sleep(0.1)

    def wait_approval(self, tenant: str, timeout: float = 60) -> dict[str, Any]:
        with self.client() as c:
            deadline = time.monotonic() + timeout
            while True:
                for a in c.get("/v1/approvals").json():
                    if a["tenant"] == tenant:
                        return a  # type: ignore[no-any-return]
                assert time.monotonic() < deadline, f"no approval for {tenant}:\n{self.log()}"
                time.sleep(0.1)

    def approve(self, approval_id: str, approved: bool = True) -> None:
        with self.client() as c:
            r = c.post(f"/v1/approvals/{approval_id}", json={"approved": approved})
            assert r.status_code == 202, r.text

    def database(self) -> str:
        return self.database_url or f"sqlite:///{self.root / 'state' / 'lifecycle' / 'lifecycle.sqlite'}"

    @property
    def audit_sink(self) -> str:
        return f"file:{self.root / 'audit-host' / 'audit-checkpoints.jsonl'}"

    def audit_verify_args(self) -> list[str]:
        """`pdp lifecycle audit-verify` options of an auditor: the state folder, and outside it the
        checkpoints and the public half of the worker's key (copied out once it exists)."""
        trusted = self.root / "audit-host" / "trusted.pem"
        if not trusted.exists():
            key = load_key(self.root / "state" / "lifecycle" / "certificate-signing-key.pem")
            trusted.write_text(public_pem(key.public_key()))
        return [
            "--state",
            str(self.root / "state"),
            "--checkpoints",
            self.audit_sink,
            "--trusted-key",
            str(trusted),
        ]


def h100_deployment(name: str, replicas: int, gpus: int = 1, **extra: Any) -> dict[str, Any]:
    """A deploy_model payload on the example fleet's H100 class."""
    return {
        "deployment": name,
        "gpu_class": "H100-80GB",
        "gpus_per_replica": gpus,
        "replicas": replicas,
        **extra,
    }


def audit_records(text: str) -> list[dict[str, Any]]:
    """The records of an exported trail (JSON lines), without its last line, the seal."""
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines and "export" in lines[-1], "the export does not end with its seal"
    return lines[:-1]


def onboard(worker: Worker, doc: dict[str, Any], *, approve: bool = False, timeout: float = 60) -> str:
    """Create a tenant through the API, approve its onboarding where the PDP asks for approval
    (`approve`: it must), wait until onboarding ends; returns the tenant token."""
    with worker.client() as c:
        r = c.post("/v1/tenants", json=doc)
        assert r.status_code == 202, r.text
        body = r.json()
    if approve or body["outcome"] == "NEEDS_APPROVAL":
        worker.approve(worker.wait_approval(doc["tenant"]["name"])["id"])
    wf = worker.wait_workflow(body["workflow_id"], timeout=timeout)
    assert wf["status"] == "SUCCESS" and wf["output"]["status"] == "active", wf
    return str(body["tenant_token"])


def deploy(worker: Worker, tenant: str, spec: dict[str, Any], *, timeout: float = 60) -> dict[str, Any]:
    """Deploy `spec` through the API (approved where the PDP asks for approval) and wait until it
    is applied; returns the workflow."""
    with worker.client() as c:
        r = c.post(f"/v1/tenants/{tenant}/deployments", json=spec)
        assert r.status_code == 202, r.text
    if r.json()["status"] == "awaiting_approval":
        worker.approve(r.json()["approval_id"])
    wf = worker.wait_workflow(r.json()["workflow_id"], timeout=timeout)
    assert wf["status"] == "SUCCESS" and wf["output"]["status"] == "applied", wf
    return wf


def examples_with(root: Path, **fleet_settings: Any) -> Path:
    """A copy of the example tenants and fleet under `root`, the fleet's `fleet_settings` set
    (e.g. shorter graces for a test); returns `root`, for `Worker(root)`."""
    shutil.copytree(EXAMPLES, root / "examples")
    fleet_file = root / "examples" / "fleet.yaml"
    fleet = yaml.safe_load(fleet_file.read_text())
    fleet["fleet"].update(fleet_settings)
    fleet_file.write_text(yaml.safe_dump(fleet))
    return root


def incident_in_state(worker: Worker, incident: str, state: str, timeout: float = 180) -> dict[str, Any]:
    """The incident's view once it is in `state`; fails if its workflow ends in error first."""
    deadline = time.monotonic() + timeout
    with worker.client() as c:
        while True:
            view: dict[str, Any] = c.get(f"/v1/incidents/{incident}").json()
            if view.get("state") == state:
                return view
            assert view.get("status") not in ("ERROR", "CANCELLED"), view
            assert time.monotonic() < deadline, f"{incident} still {view}:\n{worker.log()}"
            time.sleep(0.2)


H100_PRODUCT = "NVIDIA-H100-80GB-HBM3"


def create_gpu_node(
    kubeconfig: Any, name: str, pool: str, region: str, taints: list[dict[str, str]] | None = None
) -> None:
    """A GPU node of a fleet pool as an API object (no kubelet runs): the labels GPU feature
    discovery and the platform put on it."""
    api = config.new_client_from_config(str(kubeconfig))
    try:
        labels = {
            "kubernetes.io/hostname": name,
            "topology.kubernetes.io/region": region,
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": H100_PRODUCT,
            "gpupaas.io/pool": pool,
        }
        node = client.V1Node(
            metadata=client.V1ObjectMeta(name=name, labels=labels),
            spec=client.V1NodeSpec(taints=[client.V1Taint(**t) for t in taints] if taints else None),
        )
        client.CoreV1Api(api).create_node(node)
    finally:
        api.close()

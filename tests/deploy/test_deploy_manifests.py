"""The shipped Kubernetes manifests agree with the CLI and with each other."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from pdp.api.server import LIVENESS_SERVICE
from pdp.cli import parser
from pdp.commands.serve import _check_enforcement
from pdp.net.listen import check_plaintext, tls_files
from pdp.substrate.kubernetes.enforcement.claims import GPU_DEVICE_CLASSES
from tests.conftest import ROOT
from tests.e2e.controlplane import free_port

DEPLOY = ROOT / "deploy" / "kubernetes"


def pdp_container() -> dict[str, Any]:
    deployment = next(
        d
        for d in yaml.safe_load_all((DEPLOY / "deployment.yaml").read_text())
        if d and d["kind"] == "Deployment"
    )
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "pdp")  # type: ignore[no-any-return]


def test_the_pdp_container_arguments_are_accepted_by_pdp_serve() -> None:
    args = parser().parse_args(pdp_container()["args"][1:])
    assert args.command == "serve"
    _check_enforcement(args)  # raises SystemExit on inconsistent enforcement options


def test_the_scheduler_reaches_the_extender_the_way_it_is_served() -> None:
    # scheduler-config.yaml calling https on a port served in plaintext fails every scheduling
    # cycle of a GPU pod (the shipped deployment once lacked --extender-cert).
    config = yaml.safe_load((DEPLOY / "scheduler-config.yaml").read_text())
    (extender,) = config["extenders"]
    args = parser().parse_args(pdp_container()["args"][1:])
    assert urlsplit(extender["urlPrefix"]).port == int(args.extender_listen.rsplit(":", 1)[1])
    served_tls = bool(args.extender_cert and args.extender_key)
    assert extender.get("enableHTTPS", False) == served_tls
    assert urlsplit(extender["urlPrefix"]).scheme == ("https" if served_tls else "http")


# TLS throughout and the namespace's NetworkPolicy -----------------------------------------------
CIDR = "10.20.0.0/24"


def documents(name: str, generated: Path | None = None) -> list[dict[str, Any]]:
    """The objects of one manifest, with the kustomization's JSON patches (replace ops, as
    scripts/make-certs writes them) applied from `generated`."""
    docs = [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]
    if generated is None:
        return docs
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    for patch in kustomization["patches"]:
        target = patch["target"]
        for doc in docs:
            if doc["kind"] == target["kind"] and doc["metadata"]["name"] == target["name"]:
                for op in yaml.safe_load((generated.parent / patch["path"]).read_text()):
                    assert op["op"] == "replace"
                    *parents, last = op["path"].strip("/").split("/")
                    node: Any = doc
                    for part in parents:
                        node = node[int(part)] if isinstance(node, list) else node[part]
                    node[int(last) if isinstance(node, list) else last] = op["value"]
    return docs


def container(manifest: str, name: str) -> dict[str, Any]:
    deployment = next(d for d in documents(manifest) if d["kind"] == "Deployment")
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)  # type: ignore[no-any-return]


def pod_spec(manifest: str) -> dict[str, Any]:
    deployment = next(d for d in documents(manifest) if d["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def mounted_secret(manifest: str, container_name: str, path: str) -> tuple[str, str]:
    """(secret name, key) of the file at `path` in a container."""
    mounts = container(manifest, container_name)["volumeMounts"]
    mount = next(m for m in mounts if path.startswith(m["mountPath"].rstrip("/") + "/"))
    volume = next(v for v in pod_spec(manifest)["volumes"] if v["name"] == mount["name"])
    return volume["secret"]["secretName"], path[len(mount["mountPath"].rstrip("/")) + 1 :]


def secret_file(secret: str, key: str) -> str:
    """The generated file a secretGenerator puts under `key` of `secret`."""
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    generator = next(g for g in kustomization["secretGenerator"] if g["name"] == secret)
    files = dict(f.split("=", 1) if "=" in f else (Path(f).name, f) for f in generator["files"])
    return files[key]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scripts/make-certs run in a scratch copy of the tree; its deploy/kubernetes/generated/."""
    root = tmp_path_factory.mktemp("make-certs")
    (root / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "make-certs", root / "scripts")
    for name in (".venv", "pdp", "examples"):
        (root / name).symlink_to(ROOT / name)
    shutil.copytree(ROOT / "deploy", root / "deploy", ignore=shutil.ignore_patterns("generated"))
    out = subprocess.run(
        [str(root / "scripts" / "make-certs")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CONTROL_PLANE_CIDR": CIDR},
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return root / "deploy" / "kubernetes" / "generated"


def test_make_certs_needs_the_control_plane_addresses(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CONTROL_PLANE_CIDR"}
    out = subprocess.run(
        [str(ROOT / "scripts" / "make-certs")], capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 2 and "set CONTROL_PLANE_CIDR" in out.stderr
    bad = subprocess.run(
        [str(ROOT / "scripts" / "make-certs")],
        capture_output=True,
        text=True,
        env={**env, "CONTROL_PLANE_CIDR": "everywhere"},
        check=False,
    )
    assert bad.returncode == 2 and "is not a CIDR" in bad.stderr


def test_every_file_the_kustomization_needs_is_generated(generated: Path) -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    wanted = [p["path"] for p in kustomization["patches"]]
    for generator in kustomization["secretGenerator"] + kustomization["configMapGenerator"]:
        wanted += [f.split("=", 1)[-1] for f in generator["files"]]
    for resource in kustomization["resources"]:
        assert (DEPLOY / resource).is_file(), resource
    for path in wanted:
        assert (generated.parent / path).is_file(), f"{path} is not written by scripts/make-certs"


def test_every_pdp_listener_serves_tls() -> None:
    args = parser().parse_args(pdp_container()["args"][1:])
    assert not args.insecure
    assert args.tls_cert and args.tls_key and args.webhook_cert and args.extender_cert and args.metrics_cert
    check_plaintext(
        "--listen", args.listen, tls=tls_files(args.tls_cert, args.tls_key, "c", "k"), insecure=False
    )


def test_the_pdp_polls_the_bundle_server_over_https_trusting_the_platform_ca(generated: Path) -> None:
    # The bundle server: TLS with the certificate of its Secret, accepted by `pdp serve-bundles`.
    serve = container("bundle-server.yaml", "serve")
    args = parser().parse_args(serve["args"][1:])
    assert args.command == "serve-bundles" and not args.insecure
    _, port = check_plaintext(
        "--listen", args.listen, tls=tls_files(args.tls_cert, args.tls_key, "c", "k"), insecure=False
    )
    cert_secret, cert_key = mounted_secret("bundle-server.yaml", "serve", str(args.tls_cert))
    key_secret, key_key = mounted_secret("bundle-server.yaml", "serve", str(args.tls_key))
    assert cert_secret == key_secret == "pdp-bundles-tls"
    served = x509.load_pem_x509_certificate(
        (generated.parent / secret_file(cert_secret, cert_key)).read_bytes()
    )
    assert (
        (generated.parent / secret_file(key_secret, key_key))
        .read_bytes()
        .startswith(b"-----BEGIN PRIVATE KEY")
    )

    # The bundle server builds the wasm bundle too, signed with the same key.
    build = pod_spec("bundle-server.yaml")["initContainers"][0]
    build_args = parser().parse_args(build["args"][1:])
    assert build_args.engine == "wasm" and build_args.signing_key

    # The PDP: https to the bundle Service, CA file from the pdp-ca Secret, the public key of the
    # signing key from bundle-signing-pubkey (what OPA verifies with in deploy/opa-config.yaml).
    pdp = parser().parse_args(container("deployment.yaml", "pdp")["args"][1:])
    parts = urlsplit(pdp.wasm_bundle_url)
    service = next(d for d in documents("bundle-server.yaml") if d["kind"] == "Service")
    assert parts.scheme == "https" and pdp.engine == "wasm"
    assert parts.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert parts.port == service["spec"]["ports"][0]["port"] == port
    assert parts.path == "/gpupaas.wasm.tar.gz"
    assert mounted_secret("deployment.yaml", "pdp", str(pdp.bundle_verification_key)) == (
        "bundle-signing-pubkey",
        "bundle-signing.pub.pem",
    )
    ca_secret, ca_key = mounted_secret("deployment.yaml", "pdp", str(pdp.bundle_ca))
    ca = x509.load_pem_x509_certificate((generated.parent / secret_file(ca_secret, ca_key)).read_bytes())

    # What OPA will check: the served certificate is issued by that CA and names the Service.
    served.verify_directly_issued_by(ca)
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert parts.hostname in names.get_values_for_type(x509.DNSName)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert "ca.key" not in str(kustomization_files())  # the CA's key is never shipped


def kustomization_files() -> list[str]:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    return [
        f for g in kustomization["secretGenerator"] + kustomization["configMapGenerator"] for f in g["files"]
    ]


def pods_by_label() -> dict[str, dict[str, Any]]:
    """app.kubernetes.io/name -> pod spec of each Deployment in the namespace."""
    out = {}
    for manifest in ("deployment.yaml", "bundle-server.yaml"):
        deployment = next(d for d in documents(manifest) if d["kind"] == "Deployment")
        assert deployment["metadata"]["namespace"] == "gpupaas-system"
        out[deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]] = deployment[
            "spec"
        ]["template"]["spec"]
    return out


def test_the_namespace_denies_by_default_and_allows_only_the_platforms_paths(generated: Path) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in documents("networkpolicy.yaml", generated)}
    assert all(p["kind"] == "NetworkPolicy" for p in documents("networkpolicy.yaml"))
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    pods = pods_by_label()
    selected = {
        p["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") for p in policies.values()
    }
    assert set(pods) <= selected  # every platform pod has its own policy beside the default deny

    def ports(pod: str, port_name: str) -> int:
        return next(
            p["containerPort"]
            for c in pods[pod]["containers"]
            for p in c.get("ports", [])
            if p["name"] == port_name
        )

    pdp, bundles = policies["pdp"], policies["pdp-bundles"]
    # From outside the namespace: the control plane to the webhook and extender ports, nothing else.
    (from_control_plane, grpc_clients, scrapers) = pdp["ingress"]
    assert from_control_plane["from"] == [{"ipBlock": {"cidr": CIDR}}]
    assert {p["port"] for p in from_control_plane["ports"]} == {
        ports("gpupaas-pdp", "webhook"),
        ports("gpupaas-pdp", "extender"),
    }
    assert grpc_clients["ports"] == [{"protocol": "TCP", "port": ports("gpupaas-pdp", "grpc")}]
    assert grpc_clients["from"] == [
        {"podSelector": {}},
        {"namespaceSelector": {"matchLabels": {"gpupaas.io/pdp-client": "true"}}},
    ]
    # Prometheus, from namespaces labelled for it, to the metrics port only.
    assert scrapers == {
        "from": [{"namespaceSelector": {"matchLabels": {"gpupaas.io/metrics-scraper": "true"}}}],
        "ports": [{"protocol": "TCP", "port": ports("gpupaas-pdp", "metrics")}],
    }
    # Inside: the PDP pod (its OPA) to the bundle server's port, and only it.
    bundle_port = ports("gpupaas-bundles", "bundles")
    assert pdp["egress"][0] == {
        "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gpupaas-bundles"}}}],
        "ports": [{"protocol": "TCP", "port": bundle_port}],
    }
    assert bundles["ingress"] == [
        {
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "gpupaas-pdp"}}}],
            "ports": [{"protocol": "TCP", "port": bundle_port}],
        }
    ]
    assert bundles["egress"] == []
    # No rule opens anything to everyone: every rule names its peers and its ports.
    for spec in policies.values():
        for rule in spec.get("ingress", []) + spec.get("egress", []):
            peers = rule.get("from", rule.get("to"))
            assert peers and rule.get("ports"), rule
            assert all(p.get("ipBlock", {}).get("cidr") not in ("0.0.0.0/0", "::/0") for p in peers)
    # Unpatched, the control-plane address matches nothing (TEST-NET-1) rather than everything.
    raw = {p["metadata"]["name"]: p["spec"] for p in documents("networkpolicy.yaml")}
    assert raw["pdp"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "192.0.2.0/24"}}]


def deployment_container(name: str) -> dict[str, Any]:
    deployment = next(
        d
        for d in yaml.safe_load_all((DEPLOY / "deployment.yaml").read_text())
        if d and d["kind"] == "Deployment"
    )
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)  # type: ignore[no-any-return]


def flag(args: list[str], name: str) -> str:
    return next(a.split("=", 1)[1] for a in args if a.startswith(f"{name}="))


def test_the_pdp_probes_ask_its_plaintext_health_port() -> None:
    container = pdp_container()
    args = parser().parse_args(container["args"][1:])
    health_port = int(args.health_listen.rsplit(":", 1)[1])
    # The kubelet's gRPC probe speaks plaintext: the TLS decision port would fail every probe.
    assert health_port != int(args.listen.rsplit(":", 1)[1]) and args.tls_cert
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["grpc"]["port"] == health_port, probe
    assert container["readinessProbe"]["grpc"].get("service", "") == ""  # follows the engine
    assert container["livenessProbe"]["grpc"]["service"] == LIVENESS_SERVICE  # does not
    assert container["startupProbe"]["grpc"]["service"] == LIVENESS_SERVICE


def test_the_opa_probes_ask_its_diagnostic_port_and_the_data_api_stays_on_loopback() -> None:
    # The OPA sidecar is the chart's pdp.engine=opa configuration.
    from tests.helm import key, template

    objs = {key(o): o for o in template("pdp.engine=opa")}
    pod = objs["Deployment/gpupaas-system/pdp"]["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == "opa")
    args = container["args"]
    assert flag(args, "--addr").startswith("127.0.0.1:")
    diagnostic_port = int(flag(args, "--diagnostic-addr").rsplit(":", 1)[1])
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == diagnostic_port, probe
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health?bundles=true"


def test_the_pinned_opa_serves_the_probe_paths_on_its_diagnostic_port(
    tmp_path: Path, opa_binary: Path
) -> None:
    # The same flags as the OPA container, on loopback ports: /health and /health?bundles=true
    # answer on the diagnostic port, the Data API does not.
    data_port, diagnostic_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            str(opa_binary), "run", "--server", "--skip-version-check",
            f"--addr=127.0.0.1:{data_port}", f"--diagnostic-addr=127.0.0.1:{diagnostic_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{diagnostic_port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "OPA's diagnostic port never answered"
            time.sleep(0.05)
        assert httpx.get(f"{base}/health?bundles=true", timeout=2).status_code == 200
        assert httpx.post(f"{base}/v1/data", json={}, timeout=2).status_code == 404
    finally:
        proc.terminate()
        proc.wait()


SYSTEM_NAMESPACES = ["kube-system", "kube-public", "kube-node-lease", "gpupaas-system"]


def webhooks() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "webhook.yaml").read_text())
    return {hook["name"]: hook for hook in doc["webhooks"]}


def namespace_selector(hook: dict[str, Any]) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {
        e["key"]: (e["operator"], tuple(e.get("values", ())))
        for e in hook["namespaceSelector"]["matchExpressions"]
    }


def condition(hook: dict[str, Any], name: str) -> str:
    return next(c["expression"] for c in hook["matchConditions"] if c["name"] == name)  # type: ignore[no-any-return]


WORKLOAD_WEBHOOKS = (
    "gpu.workloads.pdp.gpupaas.io",
    "constraints.workloads.pdp.gpupaas.io",
    "dedicated.workloads.pdp.gpupaas.io",
)


def test_every_webhook_fails_closed_on_the_same_workloads_outside_the_same_system_allow_list() -> None:
    hooks = webhooks()
    assert set(hooks) == {*WORKLOAD_WEBHOOKS, "gpu.claims.pdp.gpupaas.io"}
    rules = [hooks[name]["rules"] for name in WORKLOAD_WEBHOOKS]
    assert all(r == rules[0] for r in rules)
    for hook in hooks.values():
        assert hook["failurePolicy"] == "Fail"
        allow_list = namespace_selector(hook)["kubernetes.io/metadata.name"]
        assert allow_list == ("NotIn", tuple(SYSTEM_NAMESPACES))
    # The allow-list is documented where operators look for it.
    docs = (ROOT / "docs" / "enforcement.md").read_text()
    assert ", ".join(f"`{ns}`" for ns in SYSTEM_NAMESPACES) in docs


def test_tenant_and_other_namespaces_are_both_covered_for_dedicated_reach() -> None:
    # Before: only namespaces labelled gpupaas.io/tenant were checked for tolerations, selectors and
    # nodeName; a non-GPU pod in `default` reached a tenant's dedicated pool unchecked.
    hooks = webhooks()
    tenant = namespace_selector(hooks["constraints.workloads.pdp.gpupaas.io"])["gpupaas.io/tenant"]
    other = namespace_selector(hooks["dedicated.workloads.pdp.gpupaas.io"])["gpupaas.io/tenant"]
    assert (tenant[0], other[0]) == ("Exists", "DoesNotExist")
    reach = condition(hooks["dedicated.workloads.pdp.gpupaas.io"], "reaches-for-a-dedicated-pool")
    for needle in (
        "t.key.startsWith('gpupaas.io/')",  # the dedicated taint
        "t.operator == 'Exists'",  # a key-less Exists toleration tolerates it too
        "k.startsWith('gpupaas.io/')",  # pool and dedicated-tenant selectors
        "k == 'kubernetes.io/hostname'",
        "has(term.matchFields)",
        "has(s.nodeName)",
    ):
        assert needle in reach, needle
    constraints = condition(hooks["constraints.workloads.pdp.gpupaas.io"], "reaches-for-a-tenant-constraint")
    assert "k == 'kubernetes.io/hostname'" in constraints and "has(s.nodeName)" in constraints


def test_the_other_workload_webhooks_skip_exactly_what_the_gpu_webhook_reviews() -> None:
    """One review per object: constraints.workloads and dedicated.workloads skip what asks for
    GPUs by the negation of gpu.workloads' own condition, so the copies cannot drift apart."""
    hooks = webhooks()
    asks = condition(hooks["gpu.workloads.pdp.gpupaas.io"], "asks-for-gpus")
    for name in ("constraints.workloads.pdp.gpupaas.io", "dedicated.workloads.pdp.gpupaas.io"):
        assert condition(hooks[name], "asks-for-no-gpus") == f"!({asks})", name


def test_pods_claiming_devices_reach_the_gpu_webhook() -> None:
    gpu = condition(webhooks()["gpu.workloads.pdp.gpupaas.io"], "asks-for-gpus")
    assert "has(s.resourceClaims) && size(s.resourceClaims) > 0" in gpu


def test_claims_of_every_gpu_device_class_the_webhook_knows_reach_it() -> None:
    hook = webhooks()["gpu.claims.pdp.gpupaas.io"]
    (rule,) = hook["rules"]
    assert rule["apiGroups"] == ["resource.k8s.io"]
    assert sorted(rule["resources"]) == ["resourceclaims", "resourceclaimtemplates"]
    expression = condition(hook, "requests-a-gpu-device-class")
    listed = re.findall(r"deviceClassName in \[([^\]]*)\]", expression)
    assert len(listed) == 2  # exactly and firstAvailable
    for names in listed:
        assert sorted(n.strip().strip("'") for n in names.split(",")) == sorted(GPU_DEVICE_CLASSES)


def test_pods_are_checked_again_when_an_update_changes_their_placement() -> None:
    # A pending pod may gain tolerations, a scheduling-gated one selectors and affinity: a CREATE-only
    # rule would let either reach a dedicated pool after admission.
    for hook in (webhooks()[name] for name in WORKLOAD_WEBHOOKS):
        pods = next(r for r in hook["rules"] if r["resources"] == ["pods"])
        assert pods["operations"] == ["CREATE", "UPDATE"]
        changed = condition(hook, "pod-placement-changed")
        for field in ("tolerations", "nodeSelector", "affinity", "nodeName", "resourceClaims"):
            assert f"'{field}'" in changed


def test_the_pdp_exposes_its_metrics_to_prometheus_over_tls() -> None:
    args = parser().parse_args(pdp_container()["args"][1:])
    host, port = check_plaintext(
        "--metrics-listen",
        args.metrics_listen,
        tls=tls_files(args.metrics_cert, args.metrics_key, "c", "k"),
        insecure=False,
    )
    assert host == "0.0.0.0"
    container_ports = {p["name"]: p["containerPort"] for p in pdp_container()["ports"]}
    assert container_ports["metrics"] == port
    # Annotation-based discovery (kubernetes_sd pod role): the same port, path and scheme.
    deployment = next(d for d in documents("deployment.yaml") if d["kind"] == "Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
        "prometheus.io/scheme": "https",
    }
    # ServiceMonitor-compatible: a Service labelled for it, whose port named "metrics" reaches
    # the container's metrics port on the PDP pods.
    service = next(
        d
        for d in documents("deployment.yaml")
        if d["kind"] == "Service" and d["metadata"]["name"] == "pdp-metrics"
    )
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] == "metrics"
    assert service["spec"]["selector"] == deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": port, "targetPort": "metrics"}]


def test_the_kueue_controller_arguments_are_accepted_by_pdp_kueue_controller() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kueue" / "controller.yaml").read_text()))
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    container = next(c for c in spec["containers"] if c["name"] == "controller")
    args = parser().parse_args(container["args"][1:])
    assert args.command == "kueue-controller" and args.in_cluster and args.opa_addr == "127.0.0.1:8181"
    # It runs as the service account the shipped role is bound to (tests/e2e run with that role).
    rbac = list(yaml.safe_load_all((ROOT / "deploy" / "kueue" / "rbac.yaml").read_text()))
    [binding] = [d for d in rbac if d["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": spec["serviceAccountName"], "namespace": "gpupaas-system"}
    ]
    # One replica: the controller has no leader election.
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_the_pdp_runs_as_several_replicas_spread_over_nodes_with_a_disruption_budget() -> None:
    deployment = next(
        d for d in yaml.safe_load_all((DEPLOY / "deployment.yaml").read_text()) if d["kind"] == "Deployment"
    )
    [budget] = [d for d in yaml.safe_load_all((DEPLOY / "pdb.yaml").read_text()) if d]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] >= 3
    # The budget covers exactly the PDP's pods and keeps all but one of them through a drain.
    assert budget["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] == 1 and budget["metadata"]["namespace"] == "gpupaas-system"
    spread = {
        c["topologyKey"]: c for c in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    }
    assert spread["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
    for constraint in spread.values():
        assert constraint["labelSelector"]["matchLabels"].items() <= labels.items()
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert "pdb.yaml" in kustomization["resources"]


def test_the_webhook_and_extender_answer_only_the_client_certificates_the_control_plane_presents(
    generated: Path,
) -> None:
    # Off loopback pdp serve refuses a front without a client CA: the shipped one has one per
    # front, and kube-apiserver's and kube-scheduler's certificates from make-certs pass its checks.
    args = parser().parse_args(pdp_container()["args"][1:])
    assert not args.webhook_allow_unauthenticated and not args.extender_allow_unauthenticated
    cas = {}
    for front, ca_file in (("webhook", args.webhook_client_ca), ("extender", args.extender_client_ca)):
        secret, key = mounted_secret("deployment.yaml", "pdp", str(ca_file))
        cas[front] = x509.load_pem_x509_certificate(
            (generated.parent / secret_file(secret, key)).read_bytes()
        )
    scheduler_tls = yaml.safe_load((DEPLOY / "scheduler-config.yaml").read_text())["extenders"][0][
        "tlsConfig"
    ]
    kubeconfig = yaml.safe_load((DEPLOY / "control-plane" / "webhook-client.kubeconfig").read_text())
    (user,) = kubeconfig["users"]
    webhook_service = next(d for d in documents("webhook.yaml"))["webhooks"][0]["clientConfig"]["service"]
    # kube-apiserver picks the user named as the host it calls: the Service on 443, without port.
    assert webhook_service["port"] == 443
    assert user["name"] == f"{webhook_service['name']}.{webhook_service['namespace']}.svc"
    admission = yaml.safe_load((DEPLOY / "control-plane" / "admission-configuration.yaml").read_text())
    (plugin,) = admission["plugins"]
    assert plugin["name"] == "ValidatingAdmissionWebhook"
    assert Path(plugin["configuration"]["kubeConfigFile"]).name == "webhook-client.kubeconfig"
    # The webhook is served without names (its HTTP/2 front cannot read them): its CA signs
    # kube-apiserver's certificate and not kube-scheduler's, so nobody else gets past the handshake.
    assert args.webhook_client_names is None and args.extender_client_names == ["kube-scheduler"]
    presented = {"webhook": user["user"]["client-certificate"], "extender": scheduler_tls["certFile"]}
    for front, cn in (("webhook", "kube-apiserver"), ("extender", "kube-scheduler")):
        # The shipped paths end in the file names make-certs writes.
        issued = x509.load_pem_x509_certificate((generated / Path(presented[front]).name).read_bytes())
        issued.verify_directly_issued_by(cas[front])
        other = cas["extender" if front == "webhook" else "webhook"]
        with pytest.raises((ValueError, InvalidSignature)):
            issued.verify_directly_issued_by(other)
        assert issued.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == cn
        usage = issued.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert x509.ExtendedKeyUsageOID.CLIENT_AUTH in usage
        assert (generated / Path(presented[front]).with_suffix(".key").name).is_file()
    assert Path(scheduler_tls["keyFile"]).name == Path(scheduler_tls["certFile"]).with_suffix(".key").name
    assert "client-ca.key" not in str(kustomization_files())  # no client CA's key is ever shipped

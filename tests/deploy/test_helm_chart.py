"""The Helm chart (deploy/helm/gpupaas): `helm lint`, `helm template` with default and non-default
values, and its equivalence with the kustomize base deploy/kubernetes where they overlap (the same
objects, field for field, once the chart's own labels are set aside)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from pdp.cli import parser
from pdp.substrate.gateway.admission import route_policy
from pdp.substrate.gateway.routes import GatewayRef
from tests.conftest import ROOT
from tests.helm import CHART, helm, key, template

BASE = ROOT / "deploy" / "kubernetes"
CHART_LABELS = {"app.kubernetes.io/part-of", "app.kubernetes.io/managed-by", "helm.sh/chart"}


def _base_objects() -> dict[str, dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    out = {}
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((BASE / resource).read_text()):
            if doc:
                out[key(doc)] = doc
    return out


def _without_chart_labels(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    labels = obj["metadata"].get("labels", {})
    for label in CHART_LABELS:
        labels.pop(label, None)
    if not labels:
        obj["metadata"].pop("labels", None)
    return obj


def test_helm_lint_passes() -> None:
    out = helm("lint", "--strict", str(CHART))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


def test_the_default_chart_is_the_kustomize_base() -> None:
    chart = {key(o): o for o in template()}
    base = _base_objects()
    assert set(base) <= set(chart), f"missing from the chart: {sorted(set(base) - set(chart))}"
    for k, obj in base.items():
        assert _without_chart_labels(chart[k]) == obj, k
    # The scheduler configuration kustomize generates as a ConfigMap.
    config = chart["ConfigMap/kube-system/kube-scheduler-config"]["data"]["scheduler-config.yaml"]
    assert yaml.safe_load(config) == yaml.safe_load((BASE / "scheduler-config.yaml").read_text())
    # Beyond the base: the lifecycle worker.
    assert set(chart) - set(base) - {"ConfigMap/kube-system/kube-scheduler-config"} == {
        "ServiceAccount/gpupaas-system/gpupaas-lifecycle",
        "ClusterRole//gpupaas-lifecycle",
        "ClusterRoleBinding//gpupaas-lifecycle",
        "ConfigMap/gpupaas-system/gpupaas-lifecycle-kubeconfig",
        "Deployment/gpupaas-system/gpupaas-lifecycle",
        "Service/gpupaas-system/gpupaas-lifecycle",
        "NetworkPolicy/gpupaas-system/gpupaas-lifecycle",
    }


def test_non_default_values_reach_every_object() -> None:
    objs = template(
        "namespace=platform",
        "pdp.replicas=5",
        "bundles.replicas=2",
        "webhook.failurePolicy=Ignore",
        "webhook.timeoutSeconds=3",
        "webhook.certManagerCertificate=platform/pdp-serving",
        "tls.pdpSecret=custom-tls",
        "lifecycle.enabled=false",
        "networkPolicy.enabled=false",
        "metrics.service=false",
    )
    by_key = {key(o): o for o in objs}
    text = yaml.safe_dump_all(objs)
    assert "gpupaas-system" not in text
    for obj in objs:
        if obj["kind"] not in (
            "Namespace",
            "ClusterRole",
            "ClusterRoleBinding",
            "ValidatingWebhookConfiguration",
        ):
            assert obj["metadata"]["namespace"] in ("platform", "kube-system"), key(obj)
    assert by_key["Deployment/platform/pdp"]["spec"]["replicas"] == 5
    assert by_key["Deployment/platform/pdp-bundles"]["spec"]["replicas"] == 2
    hooks = by_key["ValidatingWebhookConfiguration//gpupaas-pdp"]
    assert hooks["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": "platform/pdp-serving"}
    for hook in hooks["webhooks"]:
        assert hook["failurePolicy"] == "Ignore" and hook["timeoutSeconds"] == 3
        assert hook["clientConfig"]["service"]["namespace"] == "platform"
        allow = hook["namespaceSelector"]["matchExpressions"][0]
        assert allow["values"] == ["kube-system", "kube-public", "kube-node-lease", "platform"]
    pod = by_key["Deployment/platform/pdp"]["spec"]["template"]["spec"]
    assert {"name": "tls", "secret": {"secretName": "custom-tls"}} in pod["volumes"]
    (pdp,) = pod["containers"]  # the in-process wasm engine: no OPA sidecar
    url = "--wasm-bundle-url=https://pdp-bundles.platform.svc:8282/gpupaas.wasm.tar.gz"
    assert url in pdp["args"]
    assert not any(o["kind"] == "NetworkPolicy" or "lifecycle" in o["metadata"]["name"] for o in objs)
    assert "Service/platform/pdp-metrics" not in by_key


def test_the_engine_is_in_process_wasm_from_the_signed_bundle_or_an_opa_sidecar() -> None:
    def pod(*sets: str) -> dict[str, Any]:
        objs = {key(o): o for o in template(*sets)}
        return objs["Deployment/gpupaas-system/pdp"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]

    wasm = pod("pdp.webhookWorkers=3", "pdp.resources.limits.cpu=3")
    (pdp,) = wasm["containers"]
    args = parser().parse_args(pdp["args"][1:])
    assert args.engine == "wasm" and not args.opa_addr and args.webhook_workers == 3
    mounts = {m["mountPath"]: m["name"] for m in pdp["volumeMounts"]}
    assert mounts[str(args.bundle_verification_key.parent)] == "bundle-pubkey"
    assert mounts[str(args.bundle_ca.parent)] == "ca"
    assert pdp["resources"] == {"limits": {"cpu": 3}}
    for opa_pod in (
        pod("pdp.engine=opa"),
        pod("bundles.ociReference=r.example.com/g/b:1", "bundles.registryCIDR=10.0.0.0/8"),
    ):
        names = [c["name"] for c in opa_pod["containers"]]
        assert names == ["pdp", "opa"]
        args = parser().parse_args(opa_pod["containers"][0]["args"][1:])
        assert args.opa_addr == "127.0.0.1:8181" and not args.wasm_bundle_url
    out = helm("template", "gpupaas", str(CHART), "--set", "pdp.engine=fast")
    assert out.returncode != 0 and "engine" in out.stderr


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ("webhook.failurePolicy=Sometimes", "failurePolicy"),
        ("pdp.replicas=0", "replicas"),
        ("namespace=Bad_NS", "namespace"),
        ("bundles.ociReference=gpupaas/bundle:prod", "ociReference"),  # no registry host
        ("bundles.ociReference=registry.example.com/gpupaas/bundle", "ociReference"),  # no tag/digest
        ("bundles.ociReference=registry.example.com/g/b:prod", "bundles.registryCIDR"),  # egress unknown
    ],
)
def test_bad_values_are_refused_naming_the_field(value: str, field: str) -> None:
    out = helm("template", "gpupaas", str(CHART), "--set", value)
    assert out.returncode != 0
    assert field in out.stderr, out.stderr


def test_bundles_from_an_oci_registry_replace_the_bundle_server() -> None:
    pinned = "registry.example.com:5000/gpupaas/bundle@sha256:" + "ab" * 32
    objs = template(f"bundles.ociReference={pinned}", "bundles.registryCIDR=10.20.0.0/16")
    by_key = {key(o): o for o in objs}
    assert not [k for k in by_key if k.endswith("/pdp-bundles")]  # Deployment, Service, NetworkPolicy
    pod = by_key["Deployment/gpupaas-system/pdp"]["spec"]["template"]["spec"]
    opa = next(c for c in pod["containers"] if c["name"] == "opa")
    assert "--set=services.bundles.url=https://registry.example.com:5000" in opa["args"]
    assert "--set=services.bundles.type=oci" in opa["args"]
    assert f"--set=bundles.gpupaas.resource={pinned}" in opa["args"]
    assert not any("pdp-bundles" in a for a in opa["args"])
    egress = by_key["NetworkPolicy/gpupaas-system/pdp"]["spec"]["egress"]
    assert egress[0] == {
        "to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
        "ports": [{"protocol": "TCP", "port": 5000}],
    }
    assert not any(
        "podSelector" in to for rule in egress for to in rule["to"] if "gpupaas-bundles" in str(to)
    )


def test_the_lifecycle_worker_arguments_are_accepted_by_the_cli() -> None:
    worker = next(o for o in template() if key(o) == "Deployment/gpupaas-system/gpupaas-lifecycle")
    args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    parsed = parser().parse_args(args[1:])
    assert (
        parsed.kubeconfig is not None and parsed.tls_cert is not None and parsed.admin_token_file is not None
    )


def test_the_charts_route_policy_is_the_one_the_gateway_substrate_renders() -> None:
    chart = {o["kind"]: o for o in template("gateway.domain=models.example.com") if "Admission" in o["kind"]}
    rendered = {
        o["kind"]: o
        for o in route_policy(GatewayRef(name="inference", namespace="gw", domain="models.example.com"))
    }
    assert set(chart) == set(rendered) == {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    for kind, obj in rendered.items():
        assert chart[kind]["spec"] == obj["spec"], kind
        assert chart[kind]["metadata"]["name"] == obj["metadata"]["name"]


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("pdp.replicas=0", "/pdp/replicas"),
        ("pdp.replica=2", "/pdp': additional properties 'replica'"),  # a typo is not ignored
        ("webhook.failurePolicy=Maybe", "/webhook/failurePolicy"),
        ("image.tag=-latest", "/image/tag"),
        ("image.repository=Not A Repository", "/image/repository"),
        ("namespace=Platform", "/namespace"),
        ("lifecycle.enabled=maybe", "/lifecycle/enabled"),
        ("tls.pdpSecret=pdp_tls", "/tls/pdpSecret"),
    ],
)
def test_the_values_schema_refuses_bad_values_naming_the_field(value: str, named: str) -> None:
    out = helm("template", "gpupaas", str(CHART), "--set", value)
    assert out.returncode != 0, f"{value} was accepted"
    assert "values don't meet the specifications of the schema" in out.stderr, out.stderr
    assert f"at '{named}" in out.stderr, out.stderr


def _pod_specs(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each workload's pod spec (Deployments, Jobs, CronJobs), by the object's key."""
    found = {}
    for obj in objs:
        spec = obj.get("spec", {})
        template_of = spec.get("jobTemplate", {}).get("spec", spec).get("template")
        if obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob") and template_of:
            found[key(obj)] = template_of["spec"]
    return found


def _manifests(*paths: str) -> list[dict[str, Any]]:
    return [d for p in paths for d in yaml.safe_load_all((ROOT / p).read_text()) if d]


def test_every_read_only_pdp_container_has_a_writable_tmp() -> None:
    """A read-only root file system leaves Python no temporary folder (/tmp, /var/tmp, /usr/tmp
    and the working directory all read-only: "No usable temporary directory found"), and the PDP
    writes there: Granian's copy of the serving pair, the metrics its processes share, a bundle
    being built or rolled out. So each such container mounts an emptyDir at /tmp (in memory: the
    key copy never reaches a disk)."""
    layouts = {
        "chart": template(),
        "chart, OPA sidecar": template("pdp.engine=opa"),
        "kustomize base": _base_objects().values(),
        "others": _manifests("deploy/argocd/policy/rebuild-bundles.yaml", "deploy/kueue/controller.yaml"),
    }
    checked = 0
    for layout, objs in layouts.items():
        for workload, pod in _pod_specs(list(objs)).items():
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for c in pod["containers"] + pod.get("initContainers", []):
                runs_pdp = (c.get("command") or c.get("args") or [""])[0] == "pdp"
                if not (runs_pdp and c.get("securityContext", {}).get("readOnlyRootFilesystem")):
                    continue
                checked += 1
                tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
                where = f"{layout}: {workload} container {c['name']}"
                assert tmp and not tmp[0].get("readOnly"), f"{where} has no writable /tmp"
                assert volumes[tmp[0]["name"]].get("emptyDir", {}).get("medium") == "Memory", where
    # The chart's PDP, bundle server and lifecycle worker (twice), the base's two, the Kueue controller.
    assert checked == 9, checked

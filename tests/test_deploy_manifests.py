"""The shipped Kubernetes manifests agree with the CLI and with each other."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import yaml

from pdp.cli import _check_enforcement, parser
from pdp.enforcement.claims import GPU_DEVICE_CLASSES

from .conftest import ROOT

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

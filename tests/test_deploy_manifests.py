"""The shipped Kubernetes manifests agree with the CLI and with each other."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import yaml

from pdp.cli import _check_enforcement, parser

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

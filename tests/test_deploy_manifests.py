"""The shipped Kubernetes manifests agree with the CLI and with each other."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from pdp.api.server import LIVENESS_SERVICE
from pdp.cli import _check_enforcement, parser

from .conftest import ROOT
from .e2e.controlplane import free_port

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
    container = deployment_container("opa")
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

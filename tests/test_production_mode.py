"""Production shape with the local OPA binary: OPA configured by deploy/opa-config.yaml pulls the
signed bundle from `pdp serve-bundles` over HTTPS, trusting only the platform CA; `pdp serve
--opa-addr` decides through it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pdp.embedded import opa_ready
from pdp.net.certs import issue_server_cert, make_ca
from tests.commands.test_cli import config_args, pdp
from tests.conftest import EXAMPLES, ROOT
from tests.ports import free_port


@pytest.fixture()
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in reversed(started):
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def start_bundles_and_opa(
    workspace: Path,
    opa_binary: Path,
    processes: list[subprocess.Popen[str]],
    *,
    trusted_ca: Path | None = None,
) -> int:
    """The TLS bundle server and OPA configured by deploy/opa-config.yaml polling it, trusting the
    CA that issued the server's certificate (or `trusted_ca`); returns OPA's port."""
    bundle_port, opa_port = free_port(), free_port()
    ca = make_ca(workspace / "pki")
    serving = issue_server_cert(ca, workspace / "pki" / "bundles", ["127.0.0.1"])
    processes.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pdp.cli",
                "serve-bundles",
                "--bundles",
                str(workspace / "bundles"),
                "--listen",
                f"127.0.0.1:{bundle_port}",
                "--tls-cert",
                str(serving.cert),
                "--tls-key",
                str(serving.key),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
    )
    processes.append(
        subprocess.Popen(
            [
                str(opa_binary),
                "run",
                "--server",
                f"--addr=127.0.0.1:{opa_port}",
                f"--config-file={ROOT / 'deploy' / 'opa-config.yaml'}",
                f"--set-file=keys.gpupaas.key={workspace / 'keys' / 'bundle-signing.pub.pem'}",
                "--skip-version-check",
                f"--set=services.bundles.url=https://127.0.0.1:{bundle_port}",
                f"--set=services.bundles.tls.ca_cert={trusted_ca or ca.cert}",
                "--set=bundles.gpupaas.polling.min_delay_seconds=1",
                "--set=bundles.gpupaas.polling.max_delay_seconds=2",
            ],
            cwd=workspace,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
    )
    return opa_port


def test_opa_refuses_a_bundle_server_its_ca_did_not_certify(
    workspace: Path, opa_binary: Path, processes: list[subprocess.Popen[str]]
) -> None:
    assert pdp("build", *config_args(workspace)).returncode == 0
    other_ca = make_ca(workspace / "other-ca")
    opa_port = start_bundles_and_opa(workspace, opa_binary, processes, trusted_ca=other_ca.cert)
    deadline = time.monotonic() + 30
    while True:
        try:
            status = httpx.get(f"http://127.0.0.1:{opa_port}/v1/status", timeout=1).json()
            bundle = status["result"]["bundles"]["gpupaas"]
        except (httpx.HTTPError, KeyError, ValueError):
            bundle = {}
        if "certificate" in json.dumps(bundle):
            break
        assert time.monotonic() < deadline, f"OPA never reported the untrusted certificate: {bundle}"
        time.sleep(0.2)
    assert "certificate signed by unknown authority" in json.dumps(bundle)
    assert not opa_ready(f"127.0.0.1:{opa_port}")


def test_pdp_with_a_separately_run_opa_pulling_from_the_bundle_server(
    workspace: Path, opa_binary: Path, processes: list[subprocess.Popen[str]]
) -> None:
    built = pdp("build", *config_args(workspace))
    assert built.returncode == 0, built.stderr
    revision = json.loads(built.stdout)["revision"]

    pdp_port = free_port()
    opa_port = start_bundles_and_opa(workspace, opa_binary, processes)
    deadline = time.monotonic() + 30
    while not opa_ready(f"127.0.0.1:{opa_port}"):
        assert time.monotonic() < deadline, "OPA never activated the signed bundle"
        time.sleep(0.1)

    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pdp.cli",
            "serve",
            "--opa-addr",
            f"127.0.0.1:{opa_port}",
            "--listen",
            f"127.0.0.1:{pdp_port}",
            "--state",
            str(workspace / "state"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    processes.append(serve)
    assert serve.stdout is not None
    assert "pdp serving on" in serve.stdout.readline()

    out = pdp(
        "decide", "--server", f"127.0.0.1:{pdp_port}", str(EXAMPLES / "intents" / "02-acme-eu-deploy-us.json")
    )
    assert out.returncode == 1, out.stderr
    decision = json.loads(out.stdout)
    assert "RESIDENCY_VIOLATION" in [r["code"] for r in decision["reasons"]]
    assert decision["bundle_revision"] == revision


def test_serve_refuses_plaintext_off_loopback(workspace: Path) -> None:
    out = pdp("serve", "--opa-addr", "127.0.0.1:1", "--listen", "0.0.0.0:0", "--state", str(workspace / "s"))
    assert out.returncode != 0
    assert "not loopback" in out.stderr

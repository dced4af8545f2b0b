"""The product API's listener: plaintext off loopback refused, allowed with --insecure and logged,
TLS served and verified against the platform CA by the API's clients (httpx and the CLI)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from pdp.net.certs import issue_server_cert, make_ca
from tests.lifecycle.harness import ROOT, Worker


def test_plaintext_off_loopback_is_refused(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "lifecycle", "worker", "--state", str(tmp_path / "s"),
         "--listen", "0.0.0.0:8700"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert out.returncode == 2, out
    (line,) = out.stderr.strip().splitlines()
    assert line == (
        "error: --listen 0.0.0.0:8700 is not loopback: give --tls-cert and --tls-key to serve TLS "
        "(or --insecure to serve plaintext on a private network you trust)"
    )
    assert not (tmp_path / "s").exists()


def test_the_api_serves_tls_off_loopback_and_plaintext_only_with_insecure(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki")
    serving = issue_server_cert(ca, tmp_path / "pki" / "api", ["127.0.0.1"])
    worker = Worker(
        tmp_path / "w",
        listen_host="0.0.0.0",
        ca=ca.cert,
        tls_cert=str(serving.cert),
        tls_key=str(serving.key),
    )
    try:
        worker.start()
        assert worker.url.startswith("https://127.0.0.1:")
        with worker.client() as c:
            assert c.get("/v1/whoami").json()["role"] == "admin"
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{worker.url}/healthz", verify=ssl.create_default_context(), timeout=10)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{worker.port}/healthz", timeout=10)
        # The CLI trusts the CA through SSL_CERT_FILE (httpx reads it).
        out = subprocess.run(
            [sys.executable, "-m", "pdp.cli", "lifecycle", "token", "whoami", "--url", worker.url,
             "--token", worker.admin_token],
            capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
            env={**os.environ, "SSL_CERT_FILE": str(ca.cert)},
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["role"] == "admin"
        assert "WARNING pdp.net.listen" not in worker.log()

        worker.stop()
        worker.opts, worker.flags = {}, ("insecure",)
        worker.url = f"http://127.0.0.1:{worker.port}"
        worker.start()
        with worker.client() as c:
            assert c.get("/v1/whoami").json()["role"] == "admin"
        assert (
            f"WARNING pdp.net.listen: --listen 0.0.0.0:{worker.port}: serving plaintext off loopback because "
            "of --insecure; bearer tokens and tenant data travel unencrypted"
        ) in worker.log()
    finally:
        worker.stop()

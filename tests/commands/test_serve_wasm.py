"""`pdp serve --engine wasm --wasm-bundle-url --bundle-verification-key`, the deployed fast
configuration, as a real process with gRPC worker processes, pulling from the project's bundle
server over TLS on loopback: DENY before a bundle verifies, the signed revision once one does (in
every worker), and the last good revision when a tampered one is published."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pdp.bundles.server import BundleServer
from pdp.net.certs import issue_server_cert, make_ca
from pdp.net.servingcert import ServingCertificate
from pdp.opa.bundle import CURRENT_WASM_BUNDLE
from tests.api.test_pdp_health import NOT_SERVING, SERVING, health_of
from tests.bundles.signed_wasm import DENIED, allow_everywhere, build_signed, keys_in, rewrite
from tests.commands.test_cli import pdp
from tests.conftest import EXAMPLES
from tests.ports import free_port


@pytest.fixture
def serve_process() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _decide(port: int) -> dict[str, object]:
    out = pdp("decide", "--server", f"127.0.0.1:{port}", str(EXAMPLES / "intents" / DENIED))
    assert out.returncode == 1, out.stderr  # DENY
    decision: dict[str, object] = json.loads(out.stdout)
    return decision


def _codes(decision: dict[str, object]) -> list[str]:
    return [r["code"] for r in decision["reasons"]]  # type: ignore[attr-defined]


def test_serve_decides_with_the_verified_signed_wasm_bundle(
    tmp_path: Path, opa_binary: Path, serve_process: list[subprocess.Popen[str]]
) -> None:
    keys = keys_in(tmp_path / "keys")
    built = build_signed(tmp_path / "build", keys)
    assert built.wasm_path is not None
    signed = built.wasm_path.read_bytes()
    ca = make_ca(tmp_path / "pki" / "ca")
    cert = issue_server_cert(ca, tmp_path / "pki" / "bundles", ["127.0.0.1"])
    folder = tmp_path / "served"
    folder.mkdir()

    def publish(data: bytes) -> None:
        (folder / ".tmp").write_bytes(data)
        os.replace(folder / ".tmp", folder / CURRENT_WASM_BUNDLE)

    publish(rewrite(signed, allow_everywhere))  # only a tampered bundle at first
    port, health = free_port(), free_port()
    with BundleServer(folder, tls=ServingCertificate(cert.cert, cert.key)) as server:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "pdp.cli", "serve", "--engine", "wasm"),
                *("--wasm-bundle-url", f"{server.url}/{CURRENT_WASM_BUNDLE}"),
                *("--bundle-verification-key", str(keys.public_key), "--bundle-ca", str(ca.cert)),
                *("--listen", f"127.0.0.1:{port}", "--workers", "2", "--state", str(tmp_path / "state")),
                *("--health-listen", f"127.0.0.1:{health}"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        serve_process.append(proc)
        assert proc.stdout is not None
        while "pdp serving on" not in (line := proc.stdout.readline()):
            assert line, "pdp serve exited"
        for _ in range(3):  # whichever process the connection reaches
            assert _codes(_decide(port)) == ["ENGINE_NO_ACTIVE_BUNDLE"]
        assert health_of(f"127.0.0.1:{health}", "") == NOT_SERVING  # not ready without a bundle

        publish(signed)
        deadline = time.monotonic() + 30
        while (decision := _decide(port))["bundle_revision"] != built.revision:
            assert time.monotonic() < deadline, f"never decided on the signed bundle: {decision}"
            time.sleep(0.5)
        time.sleep(1.0)  # the worker's file watcher
        deadline = time.monotonic() + 10
        while health_of(f"127.0.0.1:{health}", "") != SERVING:
            assert time.monotonic() < deadline, "never ready with a verified bundle"
            time.sleep(0.3)
        for _ in range(4):  # every process decides on it
            decision = _decide(port)
            assert decision["bundle_revision"] == built.revision
            assert "RESIDENCY_VIOLATION" in _codes(decision)

        publish(rewrite(signed, allow_everywhere))
        time.sleep(1.0)
        for _ in range(4):
            decision = _decide(port)
            assert decision["bundle_revision"] == built.revision
            assert "RESIDENCY_VIOLATION" in _codes(decision)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--wasm-bundle-url", "https://127.0.0.1:1/b.tar.gz"], "go together"),
        (
            ["--engine", "opa", "--wasm-bundle-url", "https://h/b", "--bundle-verification-key", "k"],
            "needs --engine wasm",
        ),
        (
            [
                "--engine",
                "wasm",
                "--wasm-bundle-url",
                "http://bundles:8282/b",
                "--bundle-verification-key",
                "k",
            ],
            "plain http",
        ),
        (
            [
                "--engine",
                "wasm",
                "--wasm-bundle-url",
                "https://127.0.0.1:1/b",
                "--bundle-verification-key",
                "/nonexistent.pem",
            ],
            "nonexistent.pem",
        ),
    ],
)
def test_serve_refuses_signed_wasm_options_that_cannot_work(
    tmp_path: Path, options: list[str], message: str
) -> None:
    out = pdp("serve", *options, "--state", str(tmp_path / "state"))
    assert out.returncode != 0 and message in out.stderr, out.stderr

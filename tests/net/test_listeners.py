"""Every listener refuses plaintext off loopback unless --insecure (then warns), and serves TLS
that a client verifying against the platform CA accepts (pdp/net/listen.py).

The servers here are real `pdp` processes; `pdp serve --opa-addr 127.0.0.1:1` points at no OPA,
which is enough to start the gRPC, webhook and extender listeners (decisions would be DENY).
The lifecycle worker's listener is tested in tests/lifecycle/test_worker_tls.py.
"""

from __future__ import annotations

import logging
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pdp.api.token_file import BearerTokens
from pdp.net.certs import CertPair, issue_client_cert, issue_server_cert, make_ca
from pdp.net.listen import ListenError, check_plaintext, is_loopback, split_host_port, tls_files
from tests.conftest import ROOT

NO_OPA = ["--opa-addr", "127.0.0.1:1"]


def token_file(tmp: Path) -> str:
    """A token file for the gRPC front, which off loopback asks its callers for a token."""
    path = tmp / "decision-tokens"
    BearerTokens.write_new(path, "listener-token", "admin")
    return str(path)


@dataclass
class Pki:
    ca: CertPair
    server: CertPair
    apiserver: CertPair  # kube-apiserver's client certificate to the webhook
    scheduler: CertPair  # kube-scheduler's to the extender


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = make_ca(root / "ca")
    return Pki(
        ca,
        issue_server_cert(ca, root / "server", ["127.0.0.1", "localhost"]),
        issue_client_cert(ca, root / "apiserver", "kube-apiserver"),
        issue_client_cert(ca, root / "scheduler", "kube-scheduler"),
    )


def verifying_context(ca: CertPair) -> ssl.SSLContext:
    """A client context that trusts only the generated CA and checks the host name."""
    context = ssl.create_default_context(cafile=str(ca.cert))
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    return context


# the rule ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("pdp.gpupaas-system.svc", False),
        ("localhost.evil.example", False),
    ],
)
def test_loopback_is_only_the_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_listen_addresses_are_checked_and_named() -> None:
    assert split_host_port("[::]:8443", "--webhook-listen") == ("::", 8443)
    assert split_host_port(":8282") == ("0.0.0.0", 8282)
    for bad in ("8443", "host:", "host:http", "host:70000"):
        with pytest.raises(ListenError, match=f"--webhook-listen {re.escape(bad)}: expected HOST:PORT"):
            split_host_port(bad, "--webhook-listen")
    with pytest.raises(ListenError, match="give both --tls-cert and --tls-key, or neither"):
        tls_files(Path("c.pem"), None, "--tls-cert", "--tls-key")


def test_plaintext_the_earlier_name_of_insecure_still_works() -> None:
    from pdp.cli import parser

    assert parser().parse_args(["serve", "--plaintext"]).insecure
    assert not parser().parse_args(["serve"]).insecure


def test_plaintext_off_loopback_needs_insecure_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pdp.net.listen"):
        assert check_plaintext("--listen", "127.0.0.1:1", tls=None, insecure=False) == ("127.0.0.1", 1)
        assert not caplog.records
        with pytest.raises(ListenError, match=r"--listen 0\.0\.0\.0:1 is not loopback"):
            check_plaintext("--listen", "0.0.0.0:1", tls=None, insecure=False)
        check_plaintext("--listen", "0.0.0.0:1", tls=None, insecure=True, carries="tokens")
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING
    assert "--insecure" in warning.getMessage() and "tokens travel unencrypted" in warning.getMessage()


# the processes ----------------------------------------------------------------------------------
class Server:
    """A `pdp` server process; stdout is read line by line, stderr goes to a file."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.stderr_path = tmp / f"stderr-{time.monotonic_ns()}.log"
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pdp.cli", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=ROOT,
            )
        self.lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines:
                if found := re.search(pattern, line):
                    return found
            left = deadline - time.monotonic()
            assert left > 0, f"no line matching {pattern!r}: {self.lines}\n{self.stderr()}"
            try:
                line = self._lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            assert line is not None, f"exited with {self.proc.wait()}:\n{self.stderr()}"
            self.lines.append(line)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture()
def servers(tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in reversed(started):
        server.stop()


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


REFUSED = [
    pytest.param(
        ["serve", *NO_OPA, "--listen", "0.0.0.0:0"],
        "--listen 0.0.0.0:0 is not loopback: give --tls-cert and --tls-key",
        id="grpc",
    ),
    pytest.param(
        ["serve", *NO_OPA, "--listen", "127.0.0.1:0", "--extender-listen", "10.1.2.3:8888"],
        "--extender-listen 10.1.2.3:8888 is not loopback: give --extender-cert and --extender-key",
        id="extender",
    ),
    pytest.param(
        ["serve", *NO_OPA, "--listen", "127.0.0.1:0", "--webhook-listen", "0.0.0.0:8443"],
        "--webhook-listen needs --webhook-cert and --webhook-key",
        id="webhook",
    ),
    pytest.param(
        ["serve-bundles", "--listen", "[::]:8282"],
        "--listen [::]:8282 is not loopback: give --tls-cert and --tls-key",
        id="bundles",
    ),
]


@pytest.mark.parametrize(("args", "message"), REFUSED)
def test_plaintext_off_loopback_is_refused(tmp_path: Path, args: list[str], message: str) -> None:
    out = run(tmp_path, *args, *(["--state", str(tmp_path)] if args[0] == "serve" else []))
    assert out.returncode == 2, out
    (line,) = out.stderr.strip().splitlines()  # one line, the reason
    assert line.startswith("error: ") and message in line, out.stderr
    if "webhook" not in message:
        assert "--insecure" in line  # says how to proceed on a private network


UNAUTHENTICATED = [
    pytest.param(
        ["--webhook-listen", "0.0.0.0:8443", "--webhook-cert", "{cert}", "--webhook-key", "{key}"],
        "--webhook-listen 0.0.0.0:8443 is not loopback: give --webhook-client-ca",
        id="webhook",
    ),
    pytest.param(
        ["--extender-listen", "0.0.0.0:8888", "--extender-cert", "{cert}", "--extender-key", "{key}"],
        "--extender-listen 0.0.0.0:8888 is not loopback: give --extender-client-ca",
        id="extender",
    ),
    pytest.param(
        ["--extender-listen", "0.0.0.0:8888", "--insecure"],
        "--extender-listen 0.0.0.0:8888 is not loopback: give --extender-client-ca",
        id="extender-plaintext",  # --insecure lifts TLS, not authentication
    ),
    pytest.param(
        ["--extender-listen", "127.0.0.1:8888", "--extender-client-ca", "{ca}"],
        "--extender-client-ca needs --extender-cert and --extender-key",
        id="extender-client-ca-without-tls",
    ),
    pytest.param(
        ["--webhook-listen", "127.0.0.1:8443", "--webhook-cert", "{cert}", "--webhook-key", "{key}",
         "--webhook-client-names", "kube-apiserver"],
        "--webhook-client-names needs the client CA option beside it",
        id="names-without-ca",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), UNAUTHENTICATED)
def test_a_front_off_loopback_without_client_certificates_is_refused(
    tmp_path: Path, pki: Pki, args: list[str], message: str
) -> None:
    files = {"cert": str(pki.server.cert), "key": str(pki.server.key), "ca": str(pki.ca.cert)}
    given = [a.format(**files) for a in args]
    out = run(tmp_path, "serve", *NO_OPA, "--state", str(tmp_path), "--listen", "127.0.0.1:0", *given)
    assert out.returncode == 2, out
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert message in line and "Traceback" not in out.stderr, out.stderr
    if "is not loopback" in message:
        front = args[0].split("-")[2]
        assert f"--{front}-allow-unauthenticated" in line  # says how to proceed regardless


def test_grpc_and_extender_serve_plaintext_off_loopback_with_insecure_and_warn(
    tmp_path: Path, servers: list[Server]
) -> None:
    server = Server(
        tmp_path,
        "serve", *NO_OPA, "--state", str(tmp_path), "--token-file", token_file(tmp_path),
        "--listen", "0.0.0.0:0", "--extender-listen", "0.0.0.0:0", "--insecure",
        "--extender-allow-unauthenticated",
    )  # fmt: skip
    servers.append(server)
    extender_port = server.wait_for(r"scheduler extender on http://0\.0\.0\.0:(\d+)").group(1)
    grpc_port = server.wait_for(r"pdp serving on 0\.0\.0\.0:(\d+)").group(1)
    r = httpx.get(f"http://127.0.0.1:{extender_port}/healthz", timeout=10)
    assert r.json() == {"status": "ok"}
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.NOT_SERVING  # no OPA behind it
    warnings = [line for line in server.stderr().splitlines() if " WARNING pdp.net.listen: " in line]
    assert len(warnings) == 2, server.stderr()
    assert any(
        "--listen 0.0.0.0:0: serving plaintext off loopback because of --insecure" in w for w in warnings
    )
    assert any("--extender-listen 0.0.0.0:0: serving plaintext" in w for w in warnings)
    assert (
        "WARNING pdp.net.clientauth: --extender-listen 0.0.0.0:0: answering any client off loopback "
        "because of --extender-allow-unauthenticated" in server.stderr()
    )


def test_grpc_webhook_and_extender_serve_tls_verified_against_the_ca(
    tmp_path: Path, servers: list[Server], pki: Pki
) -> None:
    cert, key, ca = str(pki.server.cert), str(pki.server.key), str(pki.ca.cert)
    server = Server(
        tmp_path,
        "serve", *NO_OPA, "--state", str(tmp_path), "--token-file", token_file(tmp_path),
        "--listen", "0.0.0.0:0", "--tls-cert", cert, "--tls-key", key,
        "--webhook-listen", "0.0.0.0:0", "--webhook-cert", cert, "--webhook-key", key,
        "--webhook-client-ca", ca, "--webhook-client-names", "kube-apiserver",
        "--extender-listen", "0.0.0.0:0", "--extender-cert", cert, "--extender-key", key,
        "--extender-client-ca", ca, "--extender-client-names", "kube-scheduler",
    )  # fmt: skip
    servers.append(server)
    webhook_port = server.wait_for(r"admission webhook on https://0\.0\.0\.0:(\d+)/validate").group(1)
    extender_port = server.wait_for(r"scheduler extender on https://0\.0\.0\.0:(\d+)").group(1)
    grpc_port = server.wait_for(r"pdp serving on 0\.0\.0\.0:(\d+)").group(1)
    for port, client, other in (
        (webhook_port, pki.apiserver, pki.scheduler),
        (extender_port, pki.scheduler, pki.apiserver),
    ):
        context = verifying_context(pki.ca)
        context.load_cert_chain(client.cert, client.key)
        assert httpx.get(f"https://127.0.0.1:{port}/healthz", verify=context, timeout=10).status_code == 200
        # A client that does not trust the CA is refused in the handshake.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=ssl.create_default_context(), timeout=10)
        # Nor is one answered without its client certificate, or with the other component's.
        bare = verifying_context(pki.ca)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=bare, timeout=10)
        wrong = verifying_context(pki.ca)
        wrong.load_cert_chain(other.cert, other.key)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=wrong, timeout=10)
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert.read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{grpc_port}", credentials) as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert "WARNING pdp.net.listen" not in server.stderr()


def test_bundle_server_serves_plaintext_off_loopback_only_with_insecure(
    tmp_path: Path, servers: list[Server]
) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.tar.gz").write_bytes(b"bundle")
    server = Server(
        tmp_path, "serve-bundles", "--bundles", str(tmp_path / "b"), "--listen", "0.0.0.0:0", "--insecure"
    )
    servers.append(server)
    port = server.wait_for(r"at http://0\.0\.0\.0:(\d+)").group(1)
    assert httpx.get(f"http://127.0.0.1:{port}/x.tar.gz", timeout=10).content == b"bundle"
    assert "WARNING pdp.net.listen: --listen 0.0.0.0:0: serving plaintext off loopback" in server.stderr()


def test_bundle_server_serves_tls_verified_against_the_ca(
    tmp_path: Path, servers: list[Server], pki: Pki
) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.tar.gz").write_bytes(b"bundle")
    server = Server(
        tmp_path,
        "serve-bundles", "--bundles", str(tmp_path / "b"), "--listen", "0.0.0.0:0",
        "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
    )  # fmt: skip
    servers.append(server)
    port = server.wait_for(r"at https://0\.0\.0\.0:(\d+)").group(1)
    r = httpx.get(f"https://localhost:{port}/x.tar.gz", verify=verifying_context(pki.ca), timeout=10)
    assert r.content == b"bundle" and r.headers["etag"]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/x.tar.gz", timeout=5)  # plaintext gets no answer
    assert "WARNING" not in server.stderr()


@pytest.mark.parametrize("option", ["--webhook-listen", "--extender-listen"])
def test_a_port_already_taken_is_an_error_naming_the_option_and_address(
    tmp_path: Path, pki: Pki, option: str
) -> None:
    cert, key = str(pki.server.cert), str(pki.server.key)
    tls = {
        "--webhook-listen": ["--webhook-cert", cert, "--webhook-key", key],
        "--extender-listen": ["--extender-cert", cert, "--extender-key", key],
    }[option]
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        out = run(
            tmp_path,
            "serve",
            *NO_OPA,
            "--state",
            str(tmp_path),
            "--listen",
            "127.0.0.1:0",
            option,
            address,
            *tls,
        )
    assert out.returncode == 2, out
    errors = [line for line in out.stderr.strip().splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {option} {address}: cannot listen there: Address already in use"], out.stderr
    assert "Traceback" not in out.stderr, out.stderr

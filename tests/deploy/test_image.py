"""The PDP image as scripts/build-image builds it (buildah from the Dockerfile's stages, on a Debian
base made by mmdebstrap, with the wheel and the pinned OPA build), run here without a Docker
engine: its entrypoint under `buildah run --isolation chroot` prints its version, decides an
example intent with the embedded default, and, started with its own default command (TLS, a
token file), answers a gRPC Decide and an admission review over TLS from the host. Pushed to the
project's test OCI registry (tests/oci_registry.py) and pulled back by digest, it is the same image.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shlex
import signal
import ssl
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pdp.api.client import PdpClient
from pdp.net.certs import issue_client_cert, issue_server_cert, make_ca
from tests.artifacts import cached_artifact
from tests.conftest import ROOT
from tests.oci_registry import running_registry
from tests.ports import free_port
from tests.substrate.kubernetes.enforcement.conftest import body, own_pool, pod, review

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
UID = 10001


def image_env(folder: Path) -> dict[str, str]:
    out = {}
    for line in (folder / "image.env").read_text().splitlines():
        name, value = line.split("=", 1)
        out[name] = shlex.split(value)[0] if value else ""
    return out


@dataclass(frozen=True)
class Store:
    """A buildah storage (vfs): scripts/build-image's, or one of a test's own."""

    root: Path
    runroot: Path

    @classmethod
    def under(cls, folder: Path) -> Store:
        return cls(folder / "root", folder / "run")

    def buildah(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        argv = ["buildah", *self.flags, *args]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        assert out.returncode == 0, f"{' '.join(args[:3])}: {out.stderr[-3000:]}"
        return out

    @property
    def flags(self) -> list[str]:
        return ["--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver", "vfs"]


@dataclass(frozen=True)
class Image:
    folder: Path  # scripts/build-image's output
    env: dict[str, str]
    store: Store
    id: str
    container: str

    def run_argv(self, *argv: str, volumes: tuple[str, ...] = ()) -> list[str]:
        mounts = [f"--volume={v}" for v in volumes]
        return [
            "buildah",
            *self.store.flags,
            "run",
            "--isolation",
            "chroot",
            *mounts,
            self.container,
            "--",
            *argv,
        ]

    def run(
        self, *argv: str, volumes: tuple[str, ...] = (), timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.run_argv(*argv, volumes=volumes),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def config(self) -> dict[str, Any]:
        """The image's OCI configuration (User, Cmd, Env, ...)."""
        inspected = json.loads(self.store.buildah("inspect", "--type", "image", self.id).stdout)
        return dict(inspected["OCIv1"]["config"])


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    """A working container of the image, in scripts/build-image's storage (a copy of the image's
    file system: what the test's commands write stays there), removed after."""
    folder = cached_artifact("build-image")
    env = image_env(folder)
    store = Store(Path(env["IMAGE_STORE_ROOT"]), Path(env["IMAGE_STORE_RUNROOT"]))
    # Named test-*: scripts/build-image removes the other containers of its storage.
    name = f"test-{os.getpid()}-{time.monotonic_ns()}"
    container = store.buildah("from", "--pull=never", "--name", name, env["IMAGE_REFERENCE"]).stdout.strip()
    try:
        yield Image(folder, env, store, env["IMAGE_ID"], container)
    finally:
        subprocess.run(["buildah", *store.flags, "rm", container], capture_output=True, timeout=300)


def test_the_image_runs_as_a_numeric_non_root_user_and_serves_tls_by_default(image: Image) -> None:
    assert image.config()["User"] == f"{UID}:{UID}"
    cmd = image.config()["Cmd"]
    assert cmd[:2] == ["pdp", "serve"] and "--insecure" not in cmd and "--plaintext" not in cmd
    assert {"--tls-cert", "--tls-key", "--token-file"} <= set(cmd)
    whoami = image.run("python", "-c", "import os; print(os.getuid(), os.getgid())")
    assert whoami.stdout.split() == [str(UID), str(UID)], whoami.stderr


def test_the_image_holds_no_compiler(image: Image) -> None:
    tools = ("cc", "gcc", "c++", "g++", "clang", "ld", "as", "make")
    probe = f"import shutil; print([c for c in {tools!r} if shutil.which(c)])"
    out = image.run("python", "-c", probe)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_shared_library_of_the_virtual_environment_resolves(image: Image) -> None:
    """The wheels' native extensions find what they link against (libstdc++ for grpcio, ...)."""
    out = image.run(
        "sh", "-c", "find /opt/pdp -name '*.so*' -type f -exec ldd {} + 2>&1 | grep 'not found' || true"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_entrypoint_tells_its_version_and_the_pinned_opa(image: Image) -> None:
    version = image.run("pdp", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"pdp {VERSION}"
    opa = image.run("opa", "version")
    from pdp.opa.binary import OPA_VERSION

    assert f"Version: {OPA_VERSION}" in opa.stdout, opa.stderr


def test_the_entrypoint_decides_an_example_intent_with_the_embedded_default(image: Image) -> None:
    intents = ROOT / "examples" / "intents"
    out = image.run(
        "pdp", "decide", "/intents/02-acme-eu-deploy-us.json", volumes=(f"{intents}:/intents:ro",)
    )
    assert out.returncode == 1, out.stderr  # DENY
    decision = json.loads(out.stdout)
    assert decision["outcome"] == "DENY"
    assert [r["code"] for r in decision["reasons"]] == ["RESIDENCY_VIOLATION"]


def test_the_default_command_refuses_to_start_without_its_certificate(image: Image) -> None:
    """Nothing mounted at /app/tls/: no plaintext fallback, an error naming the missing file."""
    cmd = image.config()["Cmd"]
    out = image.run(*cmd, timeout=120)
    assert out.returncode != 0
    assert "/app/tls/tls.crt" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]


def _owned(path: Path, mode: int) -> Path:
    os.chown(path, UID, UID)
    path.chmod(mode)
    return path


def _review(port: int, ca: Path, client: tuple[Path, Path], raw: bytes) -> dict[str, object] | None:
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(*client)
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        conn.request("POST", "/validate?timeout=5s", raw, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return json.loads(response.read()) if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def test_the_default_command_answers_grpc_and_the_webhook_over_tls_from_the_host(
    image: Image, tmp_path: Path
) -> None:
    """The image's own command, with what it expects mounted (the serving certificate and key at
    /app/tls/, the callers' tokens at /app/var/decision-tokens), moved to loopback ports of this
    host (chroot isolation shares the host's network; argparse keeps the last --listen) and with
    the admission webhook beside it, its callers authenticated by client certificate."""
    ca = make_ca(tmp_path / "ca")
    serving = issue_server_cert(ca, tmp_path / "ca" / "pdp", ["127.0.0.1"])
    apiserver = issue_client_cert(ca, tmp_path / "ca" / "apiserver", "kube-apiserver")
    tls = tmp_path / "tls"
    tls.mkdir()
    (tls / "tls.crt").write_bytes(serving.cert.read_bytes())
    (tls / "tls.key").write_bytes(serving.key.read_bytes())
    (tls / "ca.crt").write_bytes(ca.cert.read_bytes())
    _owned(tls / "tls.key", 0o600)
    _owned(tls, 0o700)
    token = "t" * 40
    tokens = tmp_path / "decision-tokens"
    tokens.write_text(f"admin {token}\n")
    _owned(tokens, 0o600)
    grpc_port, webhook_port = free_port(), free_port()
    cmd = image.config()["Cmd"]
    argv = image.run_argv(
        *cmd,
        *("--listen", f"127.0.0.1:{grpc_port}"),
        *("--webhook-listen", f"127.0.0.1:{webhook_port}"),
        *("--webhook-cert", "/app/tls/tls.crt", "--webhook-key", "/app/tls/tls.key"),
        *("--webhook-client-ca", "/app/tls/ca.crt", "--webhook-client-names", "kube-apiserver"),
        volumes=(f"{tls}:/app/tls:ro", f"{tokens}:/app/var/decision-tokens:ro"),
    )
    log = tmp_path / "serve.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while b"pdp serving on" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.5)
        intent = json.loads((ROOT / "examples" / "intents" / "01-acme-eu-deploy-eu.json").read_text())
        with PdpClient(f"127.0.0.1:{grpc_port}", ca_file=ca.cert, token=token, timeout=30) as client:
            decision = client.decide(intent)
        assert decision["outcome"] == "ALLOW"
        assert decision["constraints"]["eligible_clusters"] == ["eu-west"]
        pinned = pod(
            limits={"nvidia.com/gpu": "1"},
            node_selector={"topology.kubernetes.io/region": "us-east-1"},
            tolerations=own_pool("acme-eu"),
        )
        answer = None
        while answer is None and time.monotonic() < deadline:
            answer = _review(
                webhook_port, ca.cert, (apiserver.cert, apiserver.key), body(review(pinned, "acme-prod"))
            )
        assert answer is not None, log.read_text()[-4000:]
        response = answer["response"]
        assert isinstance(response, dict)
        assert response["allowed"] is False
        assert "RESIDENCY_VIOLATION" in response["status"]["message"]
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to `buildah run` and what it started (a session of their own), SIGKILL after 30 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue


def test_pushed_to_the_registry_and_pulled_back_by_digest_it_is_the_same_image(
    image: Image, tmp_path: Path
) -> None:
    with running_registry(tmp_path / "registry") as registry:
        certs = tmp_path / "certs"
        certs.mkdir()
        (certs / "ca.crt").write_bytes(registry.ca.cert.read_bytes())
        reference = f"{registry.registry}/gpupaas/pdp"
        digest_file = tmp_path / "digest"
        image.store.buildah(
            "push", "--quiet", "--cert-dir", str(certs), "--digestfile", str(digest_file),
            image.id, f"docker://{reference}:{VERSION}",
        )  # fmt: skip
        digest = digest_file.read_text().strip()
        assert digest.startswith("sha256:")
        fresh = Store.under(tmp_path / "pulled")
        pulled = fresh.buildah("pull", "--quiet", "--cert-dir", str(certs), f"docker://{reference}@{digest}")
        try:
            # The image id is the digest of its configuration, which names every layer's content.
            assert pulled.stdout.strip().splitlines()[-1] == image.id
        finally:
            subprocess.run(
                ["buildah", *fresh.flags, "rmi", "--all", "--force"], capture_output=True, timeout=300
            )

"""A real CNCF distribution registry on loopback (built by scripts/build-registry), serving TLS with a
certificate of a test CA, and the `oras` CLI that pushes to it (scripts/build-oras)."""

from __future__ import annotations

import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from pdp.net.certs import CertPair, issue_server_cert, make_ca
from tests.artifacts import cached_artifact
from tests.ports import free_port


@dataclass(frozen=True)
class Registry:
    registry: str  # host:port, as in an OCI reference
    ca: CertPair
    storage: Path
    log: Path

    @property
    def url(self) -> str:
        return f"https://{self.registry}"


def _answers(url: str, ca: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=1, context=context) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def running_registry(directory: Path, timeout: float = 60.0) -> Iterator[Registry]:
    """The registry on 127.0.0.1 over TLS (certificate for 127.0.0.1 from a fresh CA), filesystem
    storage under `directory`; stopped and reaped on exit."""
    binary = cached_artifact("build-registry")
    ca = make_ca(directory / "ca")
    serving = issue_server_cert(ca, directory / "ca" / "registry", ["127.0.0.1"])
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(directory / "storage")}, "delete": {"enabled": True}},
        "http": {
            "addr": f"127.0.0.1:{port}",
            "tls": {"certificate": str(serving.cert), "key": str(serving.key)},
        },
    }
    config_file = directory / "registry.yml"
    config_file.write_text(yaml.safe_dump(config))
    log = directory / "registry.log"
    # No OpenTelemetry export: nothing listens for it here.
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_SDK_DISABLED": "true"}
    with log.open("ab") as fh:
        proc = subprocess.Popen([str(binary), "serve", str(config_file)], stdout=fh, stderr=fh, env=env)
    registry = Registry(f"127.0.0.1:{port}", ca, directory / "storage", log)
    try:
        deadline = time.monotonic() + timeout
        while not _answers(registry.url, ca.cert):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"registry did not answer on {registry.url}:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield registry
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""docker-compose.yml and the Dockerfile: the service graph waits on health, not on start; the
health checks prove what the next service needs; every volume a uid-10001 service writes is
handed to that uid first. Checked statically in every case (parsed YAML), rendered by
`docker compose config` where the compose plugin exists, and OPA's health check command is run
for real against a real OPA (with an inactive bundle, then an active one)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.controlplane import free_port

COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
PDP_UID = "10001"


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def services() -> dict[str, Any]:
    return dict(compose()["services"])


def option(command: list[str], name: str) -> str:
    """The value of `--name=value` in a container command."""
    values = [c.split("=", 1)[1] for c in command if c.startswith(f"{name}=")]
    assert len(values) == 1, (name, command)
    return values[0]


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Named volume -> where the service mounts it."""
    out = {}
    for spec in service.get("volumes", []):
        source, target = spec.split(":")[:2]
        if not source.startswith((".", "/")):
            out[source] = target
    return out


def test_every_service_waits_for_the_health_of_what_it_needs() -> None:
    s = services()
    assert s["pdp"]["depends_on"] == {
        "init-volumes": {"condition": "service_completed_successfully"},
        "opa": {"condition": "service_healthy"},
    }
    assert s["opa"]["depends_on"] == {"bundles": {"condition": "service_healthy"}}
    assert s["bundles"]["depends_on"] == {"init-volumes": {"condition": "service_completed_successfully"}}
    assert "depends_on" not in s["init-volumes"]
    # Every dependency named with a condition (a bare list waits for the start only), and every
    # service_healthy target has a health check.
    for name, service in s.items():
        for target, rule in service.get("depends_on", {}).items():
            assert rule["condition"] in ("service_healthy", "service_completed_successfully"), (name, target)
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in s[target], target


def test_the_bundle_servers_health_means_opa_can_start() -> None:
    s = services()
    opa, bundles = s["opa"], s["bundles"]
    # OPA reads the public key at start from the pubkey volume: the bundle server's check requires
    # that very file, at the path the same volume has in its container.
    key_path = Path(option(opa["command"], "--set-file").split("=", 1)[1])
    volume = next(v for v, target in mounts(opa).items() if key_path.parent == Path(target))
    published = Path(mounts(bundles)[volume]) / key_path.name
    check = bundles["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    assert f"os.path.getsize('{published}') > 0" in check[3]
    # ... and fetches the bundle OPA will ask for, over HTTPS, trusting the CA OPA trusts.
    config = yaml.safe_load((ROOT / "deploy" / "opa-config.yaml").read_text())
    url = f"{config['services']['bundles']['url']}/{config['bundles']['gpupaas']['resource']}"
    assert f"urlopen('{url}'" in check[3]
    ca_volume = next(
        v
        for v, target in mounts(opa).items()
        if config["services"]["bundles"]["tls"]["ca_cert"].startswith(target)
    )
    assert f"cafile='{mounts(bundles)[ca_volume]}/ca.crt'" in check[3]
    compile(check[3], "healthcheck", "exec")  # it is Python


def opa_check(service: dict[str, Any]) -> list[str]:
    check = service["healthcheck"]["test"]
    assert check[0] == "CMD" and check[1] == "/opa", check
    assert "version" not in check  # `opa version` runs without a server: it proves nothing
    return list(check[1:])


def test_opas_health_check_asks_its_diagnostic_address_for_an_active_bundle() -> None:
    opa = services()["opa"]
    check = opa_check(opa)
    diagnostic = option(opa["command"], "--diagnostic-addr")
    assert diagnostic.startswith("127.0.0.1:")
    assert check[:3] == ["/opa", "eval", "--fail"]
    assert f'"url": "http://{diagnostic}/health?bundles=true"' in check[3]


def _run_check(check: list[str], opa_binary: Path, port: int) -> int:
    query = re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", check[3])
    argv = [str(opa_binary), *check[1:3], query]
    return subprocess.run(argv, capture_output=True, timeout=30).returncode


def _start_opa(opa_binary: Path, config: Path | None, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A real OPA with its diagnostic address on a free port; another port is tried when the one
    picked was taken in between (other processes share this machine)."""
    for _ in range(5):
        port = free_port()
        argv = [
            str(opa_binary),
            "run",
            "--server",
            f"--diagnostic-addr=127.0.0.1:{port}",
            "--addr=127.0.0.1:0",
        ]
        argv += ["--skip-version-check", *([f"--config-file={config}"] if config else [])]
        opa = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while opa.poll() is None and time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return opa, port
            time.sleep(0.05)
        opa.kill()
        opa.wait(timeout=10)
    raise AssertionError(f"OPA did not start:\n{log.read_text()[-2000:]}")


def test_opas_health_check_fails_until_the_bundle_is_active(tmp_path: Path, opa_binary: Path) -> None:
    check = opa_check(services()["opa"])
    assert _run_check(check, opa_binary, free_port()) != 0  # OPA not up
    # A bundle that never activates (its server does not answer): /health?bundles=true is 500.
    config = tmp_path / "opa.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "services": {"b": {"url": f"http://127.0.0.1:{free_port()}"}},
                "bundles": {"gpupaas": {"service": "b", "resource": "gpupaas.tar.gz"}},
            }
        )
    )
    for cfg, healthy in ((config, False), (None, True)):
        opa, port = _start_opa(opa_binary, cfg, tmp_path / f"opa-{healthy}.log")
        try:
            assert (_run_check(check, opa_binary, port) == 0) is healthy, cfg
        finally:
            opa.terminate()
            opa.wait(timeout=10)


def test_services_of_the_image_run_as_uid_10001_and_own_their_volumes() -> None:
    s = services()
    dockerfile = DOCKERFILE.read_text()
    assert re.search(rf"useradd --uid {PDP_UID} --gid {PDP_UID}\b", dockerfile)
    assert re.search(rf"^USER {PDP_UID}:{PDP_UID}$", dockerfile, re.MULTILINE)  # numeric: runAsNonRoot
    built = {name for name, service in s.items() if service.get("build") == "."}
    assert built == {"init-volumes", "bundles", "pdp"}
    for name in built - {"init-volumes"}:
        assert s[name]["user"] == f"{PDP_UID}:{PDP_UID}", name
    # The one-shot init runs as root and hands every named volume those services mount to 10001.
    init = s["init-volumes"]
    assert init["user"] == "0:0"
    script = init["command"][-1]
    chown = next(shlex.split(part) for part in script.split("&&") if part.strip().startswith("chown"))
    assert chown[1] == f"{PDP_UID}:{PDP_UID}"
    owned = set(chown[2:])
    for name in built - {"init-volumes"}:
        for volume, target in mounts(s[name]).items():
            assert mounts(init).get(volume) == target, (name, volume)
            assert target in owned, (name, volume, target)
    # Private keys stay private.
    chmod = next(shlex.split(part) for part in script.split("&&") if part.strip().startswith("chmod"))
    assert chmod[1] == "0700" and {"/app/.keys", "/pki"} <= set(chmod[2:])


def test_only_public_halves_reach_opa() -> None:
    s = services()
    private = {"keys", "pki"}
    assert not private & set(mounts(s["opa"])) and not private & set(mounts(s["pdp"]))
    assert all(spec.endswith(":ro") for spec in s["opa"]["volumes"])


def test_docker_compose_config_renders_the_same_graph() -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine: `docker compose config` cannot run")
    version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if version.returncode != 0:
        pytest.skip(f"the docker compose plugin is not installed: {version.stderr.strip()[:200]}")
    rendered = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert rendered.returncode == 0, rendered.stderr
    doc = json.loads(rendered.stdout)
    for name, service in services().items():
        got = doc["services"][name]
        assert {k: v["condition"] for k, v in got.get("depends_on", {}).items()} == {
            k: v["condition"] for k, v in service.get("depends_on", {}).items()
        }
        assert got.get("user") == service.get("user")
        assert ("healthcheck" in got) == ("healthcheck" in service)

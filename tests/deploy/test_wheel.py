"""The wheel and sdist as a user installs them: built with the standard `python -m build`
(scripts/build-wheel, cached by the hash of the source), installed with the pinned runtime closure
(requirements-runtime.txt) into a fresh virtual environment outside the checkout, and run there:
`pdp --version`, and `pdp decide` of the example intents with the embedded default, whose
policies, example documents, schemas and gRPC stubs all come from inside the wheel."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pdp.opa.binary import find_opa
from tests.conftest import ROOT

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def build_wheel() -> Path:
    """scripts/build-wheel: a no-op once the wheel of this source is cached; the wheel's path."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "build-wheel")], capture_output=True, text=True, timeout=600, check=False
    )
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip().splitlines()[-1])


def pins(lines: list[str]) -> dict[str, str]:
    """name -> version of `name==version` requirement lines (names normalised as pip does)."""
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            name = re.sub(r"\[.*\]", "", name)
            out[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return out


@dataclass(frozen=True)
class Installed:
    venv: Path
    home: Path  # the working directory the commands run in: their state goes there

    def pdp(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PDP_OPA_BIN": str(find_opa())}
        env.pop("PYTHONPATH", None)
        return subprocess.run(
            [str(self.venv / "bin" / "pdp"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
            env=env,
            check=False,
        )

    @property
    def site_packages(self) -> Path:
        return next((self.venv / "lib").glob("python3*/site-packages"))


@pytest.fixture(scope="module")
def wheel() -> Path:
    return build_wheel()


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel-install")
    assert not root.is_relative_to(ROOT)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # Binary wheels only: nothing compiles on the way (the image does the same).
    install = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--only-binary",
            ":all:",
            "-r",
            str(ROOT / "requirements-runtime.txt"),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-4000:]
    check = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    home = root / "home"
    home.mkdir()
    yield Installed(venv, home)


def test_the_wheel_carries_the_policies_examples_schemas_and_grpc_stubs(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for folder in ("policies", "examples"):
        expected = {
            f"pdp/_data/{p.relative_to(ROOT).as_posix()}"
            for p in (ROOT / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert expected and expected <= names, sorted(expected - names)[:10]
    schemas = {f"pdp/schemas/{p.name}" for p in (ROOT / "pdp" / "schemas").glob("*.json")}
    assert schemas <= names
    stubs = ROOT / "pdp" / "_proto" / "gpupaas" / "pdp" / "v1"
    assert {f"pdp/_proto/gpupaas/pdp/v1/{p.name}" for p in stubs.glob("pdp_pb2*")} <= names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_the_sdist_builds_the_same_package(wheel: Path) -> None:
    sdist = wheel.parent / f"gpupaas_pdp-{VERSION}.tar.gz"
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"pyproject.toml", "setup.py", "MANIFEST.in", "proto/gpupaas/pdp/v1/pdp.proto"} <= names
    assert {"policies/gpupaas/decision/decision.rego", "examples/fleet.yaml"} <= names
    assert "pdp/_proto/gpupaas/pdp/v1/pdp_pb2.py" in names


def test_the_runtime_closure_pins_what_pyproject_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    direct = pins(project["dependencies"])
    closure = pins((ROOT / "requirements-runtime.txt").read_text().splitlines())
    assert {name: closure.get(name) for name in direct} == direct
    unpinned = [
        line
        for line in (ROOT / "requirements-runtime.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#") and "==" not in line
    ]
    assert not unpinned


def test_the_installed_pdp_tells_its_version(installed: Installed) -> None:
    out = installed.pdp("--version", timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"pdp {VERSION}"


def test_the_installed_pdp_decides_with_its_embedded_default(installed: Installed) -> None:
    """Only the intent comes from the checkout: tenants, fleet and policies are the wheel's; the
    keys, bundles and decision log go to the working directory, not into site-packages."""
    data = installed.site_packages / "pdp" / "_data"
    assert (data / "policies").is_dir()
    intents = ROOT / "examples" / "intents"
    allow = installed.pdp("decide", str(intents / "01-acme-eu-deploy-eu.json"))
    assert allow.returncode == 0, allow.stderr
    decision = json.loads(allow.stdout)
    assert decision["outcome"] == "ALLOW"
    assert decision["constraints"]["eligible_clusters"] == ["eu-west"]
    deny = installed.pdp("decide", str(intents / "02-acme-eu-deploy-us.json"))
    assert deny.returncode == 1, deny.stderr
    assert [r["code"] for r in json.loads(deny.stdout)["reasons"]] == ["RESIDENCY_VIOLATION"]
    assert (installed.home / ".keys").is_dir() and (installed.home / "var").is_dir()
    assert not any(p.name in (".keys", "var", "bundles") for p in installed.site_packages.iterdir())

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pdp.embedded import EmbeddedPDP, EmbeddedSettings
from pdp.opa.binary import find_opa

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def opa_binary() -> Path:
    # The real, pinned OPA is part of the system under test: scripts/setup builds it. A missing
    # binary is a broken setup, so it fails loudly rather than skipping.
    return find_opa()


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    """A private copy of the examples, so a test can edit tenants without touching the repo."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    return tmp_path


def embedded_settings(root: Path, **overrides: object) -> EmbeddedSettings:
    return EmbeddedSettings(
        tenants=root / "examples" / "tenants",
        fleet=root / "examples" / "fleet.yaml",
        policies=ROOT / "policies",
        bundles=root / "bundles",
        keys=root / "keys",
        state=root / "state",
        decision_log=root / "state" / "decisions.sqlite",
    ).replace(**overrides)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, opa_binary: Path) -> Iterator[EmbeddedPDP]:
    """OPA (real, supervised) + bundle server + decision point on the example tenants and fleet."""
    root = tmp_path_factory.mktemp("stack")
    shutil.copytree(EXAMPLES, root / "examples")
    with EmbeddedPDP(embedded_settings(root)) as running:
        yield running


def load_intent(name: str) -> dict[str, object]:
    import json

    return json.loads((EXAMPLES / "intents" / name).read_text())  # type: ignore[no-any-return]

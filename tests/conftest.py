from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, settings

from pdp.embedded import EmbeddedPDP, EmbeddedSettings
from pdp.integrity.sinks import CHECKPOINT_HOME_ENV
from pdp.opa.binary import find_opa
from tests.postgres import scratch_database

# The test command runs beside the builds on two cores: how fast Hypothesis makes its examples
# there says nothing about the code under test, so the too_slow health check would only be a flake
# (it failed a property test here under load). Tests that set their own health checks add it too.
settings.register_profile("gpupaas", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("gpupaas")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session", autouse=True)
def session_checkpoint_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The default home of checkpoints (pdp/integrity/sinks.py) for the session and every process it
    starts: a folder of its own, not the user's ~/.local/state, and outside every test's state."""
    home = tmp_path_factory.mktemp("checkpoint-home")
    before = os.environ.get(CHECKPOINT_HOME_ENV)
    os.environ[CHECKPOINT_HOME_ENV] = str(home)
    try:
        yield home
    finally:
        if before is None:
            os.environ.pop(CHECKPOINT_HOME_ENV, None)
        else:
            os.environ[CHECKPOINT_HOME_ENV] = before


@pytest.fixture(scope="session")
def opa_binary() -> Path:
    # The real, pinned OPA is part of the system under test: scripts/setup builds it. A missing
    # binary is a broken setup, so it fails loudly rather than skipping.
    return find_opa()


# For every tier of the policy's table (lib.tiers) and either consent, whether placement's `_borrows`
# holds for a tenant of that tier that does or does not allow preemption: a tenant of a tier that
# borrows, consenting, may borrow idle cohort capacity beyond its entitlement.
_POLICY_BORROWING = """{[tier, consents]: borrows |
    some tier, _ in data.gpupaas.lib.tiers
    some consents in [true, false]
    tenant := {"name": "t", "tier": tier, "allow_preemption": consents}
    borrows := count({1 | data.gpupaas.placement._borrows
        with data.gpupaas.tenants as {"t": tenant}
        with input as {"kind": "deploy_model", "tenant": "t"}}) == 1
}"""


@pytest.fixture(scope="session")
def policy_borrowing(opa_binary: Path) -> dict[tuple[str, bool], bool]:
    """(tier, allow_preemption) -> whether the policy lets such a tenant borrow (placement's
    `_borrows`, reading lib.tiers' `borrows`), evaluated by the real OPA on policies/."""
    out = subprocess.run(
        [str(opa_binary), "eval", "-f", "json", "-d", str(ROOT / "policies"), _POLICY_BORROWING],
        capture_output=True,
        text=True,
        check=True,
    )
    table = json.loads(out.stdout)["result"][0]["expressions"][0]["value"]
    borrowing: dict[tuple[str, bool], bool] = {}
    for key, borrows in table.items():
        tier, consents = json.loads(key)  # JSON has no array keys: opa writes [tier, consents] as text
        borrowing[(tier, consents)] = borrows
    return borrowing


@pytest.fixture()
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new database on PDP_TEST_POSTGRES_URL's server, dropped after the test (tests/postgres.py);
    the test skips, saying why, where that variable is not set."""
    prefix = request.node.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with scratch_database(prefix[:20]) as url:
        yield url


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


@pytest.fixture(scope="module")
def wasm_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPDP]:
    """The decision point on the wasm engine (the policy compiled in-process), same examples."""
    root = tmp_path_factory.mktemp("wasm")
    shutil.copytree(EXAMPLES, root / "examples")
    with EmbeddedPDP(embedded_settings(root, engine="wasm")) as running:
        yield running


def load_intent(name: str) -> dict[str, object]:
    import json

    return json.loads((EXAMPLES / "intents" / name).read_text())  # type: ignore[no-any-return]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as files (a TLS peer trusts the certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "tls.crt", directory / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file

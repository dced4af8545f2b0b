"""The Slurm tier: a real Slurm cluster (tests/substrate/slurm/cluster.py) whose job_submit.lua asks a real
PDP (OPA sidecar) over the HTTP API, with the example tenants plus `umbrella`, an enterprise tenant
on shared pools, so preemption can be seen both ways on one partition."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pdp.api.http_server import HttpDecisionServer
from pdp.api.token_file import BearerTokens
from pdp.embedded import EmbeddedPDP
from pdp.substrate.slurm import accounts, lua
from tests.conftest import EXAMPLES, embedded_settings
from tests.substrate.slurm.cluster import SlurmCluster, missing_programs

HERE = Path(__file__).parent
FLEET = yaml.safe_load((HERE / "fleet.yaml").read_text())["fleet"]
UMBRELLA = {
    "tenant": {
        "name": "umbrella",
        "display_name": "Umbrella (enterprise, shared pools)",
        "tier": "enterprise",
        "isolation": "shared",
        "data_residency": "any",
        "allow_preemption": False,
        "allow_gpu_sharing": True,
        "namespaces": ["umbrella-ml"],
        "entitlements": {"A100-40GB": 8},
        "sla": {"class": "throughput", "availability": 99.9},
    }
}

# In the bundle, not onboarded: the Ansible role realizes it (tests/substrate/slurm/test_ansible_role.py).
WAYNE = {
    "tenant": {
        "name": "wayne",
        "display_name": "Wayne (standard, EU)",
        "tier": "standard",
        "isolation": "shared",
        "data_residency": "eu-only",
        "allow_preemption": False,
        "allow_gpu_sharing": False,
        "namespaces": ["wayne-ml"],
        "entitlements": {"H100-80GB": 2},
        "sla": {"class": "throughput", "availability": 99.5},
    }
}


def _skip_without_slurm() -> None:
    missing = missing_programs()
    if missing:
        pytest.skip(
            f"Slurm tier needs {', '.join(missing)}: scripts/setup-slurm installs them with apt-get "
            "(root on Debian); it could not here"
        )


@dataclass
class SlurmWorld:
    root: Path
    token_file: Path
    cluster: SlurmCluster
    stack: EmbeddedPDP
    http: HttpDecisionServer
    policies: dict[str, dict[str, Any]]
    started_seconds: float

    def onboard(self, tenant: str) -> None:
        rendered = accounts.render(self.policies[tenant], FLEET, [self.cluster.user])
        for obj in rendered["namespaces"] + rendered["kueue"]:
            self.cluster.adapter.apply(obj)


@pytest.fixture(scope="session")
def slurm_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmWorld]:
    _skip_without_slurm()
    root = tmp_path_factory.mktemp("slurm")
    shutil.copytree(EXAMPLES, root / "examples")
    shutil.copy(HERE / "fleet.yaml", root / "examples" / "fleet.yaml")
    (root / "examples" / "tenants" / "umbrella.yaml").write_text(yaml.safe_dump(UMBRELLA))
    (root / "examples" / "tenants" / "wayne.yaml").write_text(yaml.safe_dump(WAYNE))
    policies = {
        doc["tenant"]["name"]: doc["tenant"]
        for doc in (yaml.safe_load(p.read_text()) for p in (root / "examples" / "tenants").glob("*.yaml"))
    }
    token_file = root / "pdp.token"
    tokens = BearerTokens.write_new(token_file, "slurm-ctld-token")
    # The hook as deployed: the PDP's unix socket in a folder only its user may write
    # (docs/slurm.md). Loopback TCP for the other clients (the Ansible role's module).
    run = root / "run"
    run.mkdir(mode=0o750)
    with (
        EmbeddedPDP(embedded_settings(root)) as stack,
        HttpDecisionServer(stack.point, tokens=tokens, engine_ready=stack.engine_ready) as http,
        HttpDecisionServer(
            stack.point, unix_socket=run / "http.sock", tokens=tokens, engine_ready=stack.engine_ready
        ),
    ):
        hook = lua.HookSettings(
            pdp_socket=run / "http.sock", timeout=1.0, cache_seconds=0, token_file=token_file
        )
        started = time.monotonic()
        cluster = SlurmCluster(root / "cluster", FLEET, hook).start()
        world = SlurmWorld(root, token_file, cluster, stack, http, policies, time.monotonic() - started)
        try:
            for tenant in ("acme-eu", "globex", "initech-spot", "umbrella"):
                world.onboard(tenant)
            yield world
        finally:
            cluster.stop()


@pytest.fixture()
def slurm(slurm_world: SlurmWorld) -> Iterator[SlurmWorld]:
    """The shared cluster, with no job left over from the previous test."""
    yield slurm_world
    cluster = slurm_world.cluster
    cluster.run("scancel", "--full", f"--user={cluster.user}", check=False)
    deadline = time.monotonic() + 60
    while cluster.run("squeue", "-h", "-o", "%i", check=False).stdout.strip():
        assert time.monotonic() < deadline, "jobs left after scancel"
        time.sleep(0.2)


@pytest.fixture()
def restore_hook(slurm: SlurmWorld) -> Iterator[None]:
    """The session's hook settings again after a test that installed its own."""
    yield None
    assert slurm.cluster.hook is not None
    lua.install(slurm.cluster.etc, FLEET, slurm.cluster.hook)

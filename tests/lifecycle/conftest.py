from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import config

from tests.e2e.controlplane import ControlPlane, kube_binaries
from tests.e2e.kueue import install_crds, kueue_folder
from tests.lifecycle.harness import Worker


@pytest.fixture(scope="module")
def worker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A lifecycle worker process (embedded PDP, DBOS, dry-run adapter, API) per test module,
    started with the module's `WORKER_OPTIONS` (Worker keyword arguments) if it has any."""
    options = getattr(request.module, "WORKER_OPTIONS", {})
    w = Worker(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]), **options).start()
    try:
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = ControlPlane(kube_binaries(), tmp_path_factory.mktemp("kube")).start()
    try:
        api = config.new_client_from_config(str(cp.kubeconfig))
        # Kueue's own CRDs from the pinned module: the API server validates the tenant's Kueue
        # objects against the real schemas (no Kueue runs here; tests/e2e/test_kueue_e2e.py runs it).
        install_crds(api, kueue_folder())
        api.close()
        # Without it a deleted namespace stays Terminating for ever (nothing empties it); the
        # quotas tenants get hold only once the resourcequota controller has counted their usage.
        cp.start_controller_manager(controllers=(*ControlPlane.CONTROLLERS, "resourcequota"))
        yield cp
    finally:
        cp.stop()

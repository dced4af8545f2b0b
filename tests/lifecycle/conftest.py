from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import Worker


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

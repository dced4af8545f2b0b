from __future__ import annotations

from collections.abc import Iterator

import pytest

from .harness import Worker


@pytest.fixture(scope="module")
def worker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A lifecycle worker process (embedded PDP, DBOS, dry-run adapter, API) per test module."""
    w = Worker(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])).start()
    try:
        yield w
    finally:
        w.stop()

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lifecycle.harness import Worker, onboard, tenant_doc


class Fleet:
    """A worker with two tenants onboarded: an EU-only enterprise tenant on shared pools (entitled
    to 4 H100) and a standard tenant whose display name is markup (the escaping test uses it)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        eu = tenant_doc("acme-eu", "acme-ui", ["acme-ui-prod"], isolation="shared")
        other = tenant_doc(
            "globex", "globex-ui", ["globex-ui-ml"], display_name="<script>alert('globex')</script>"
        )
        self.tokens = {
            "acme-ui": onboard(worker, eu),
            "globex-ui": onboard(worker, other),
        }


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root: Path = tmp_path_factory.mktemp("console")
    worker = Worker(root).start()
    try:
        yield Fleet(worker)
    finally:
        worker.stop()

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from tests.lifecycle.harness import Worker, onboard, tenant_doc
from tests.product.console.browser import chromium


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


def _start(tmp_path_factory: pytest.TempPathFactory) -> Worker:
    """A worker, allowed a loaded machine's start time; on a second port when another process
    took the first between the harness choosing it and the worker binding it."""
    for attempt in (1, 2):
        root: Path = tmp_path_factory.mktemp("console")
        worker = Worker(root)
        try:
            return worker.start(timeout=180)
        except (RuntimeError, TimeoutError):
            worker.stop()
            if attempt == 2 or "address already in use" not in worker.log():
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    worker = _start(tmp_path_factory)
    try:
        yield Fleet(worker)
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """Headless Chromium for a module's browser tests (tests/product/console/browser.py)."""
    with chromium() as driver:
        yield driver

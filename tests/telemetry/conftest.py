"""The telemetry stack the tests drive: the simulator and a real Prometheus scraping it every second."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from pdp.telemetry.prometheus import PrometheusClient
from pdp.telemetry.simulator import serve
from tests.artifacts import cached_artifact
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
WASTE_SCENARIO = ROOT / "examples" / "telemetry" / "waste.yaml"


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Poll `check` until it holds; fail naming `what` after `timeout` seconds (a loaded machine
    scrapes late, so waits are bounded by the condition, never by a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    # The real Prometheus is part of the system under test: scripts/build-prometheus builds it once
    # from the Go module proxy into the cache. A failed build fails the tests, it does not skip them.
    return cached_artifact("build-prometheus")


@dataclass
class Telemetry:
    simulator_url: str
    prometheus_url: str
    scenario: Path
    client: PrometheusClient

    def control(self, path: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(f"{self.simulator_url}/control/{path}", json=body, timeout=10)

    def play(
        self, scenario: dict[str, object], what: str, ready: Callable[[], bool], timeout: float = 60.0
    ) -> Telemetry:
        """Serve `scenario` from the simulator and wait until `ready` (what Prometheus has
        scraped of it, described by `what`)."""
        self.scenario.write_text(yaml.safe_dump(scenario))
        assert self.control("reload", {}).status_code == 200
        wait_for(what, ready, timeout)
        return self

    def scrapes(self) -> float:
        got = self.client.query('count_over_time(up{job="gpu"}[10m])')
        return got[0].value if got else 0.0


@pytest.fixture(scope="module")
def telemetry(tmp_path_factory: pytest.TempPathFactory, prometheus_binary: Path) -> Iterator[Telemetry]:
    """The simulator on the waste scenario, scraped by a real Prometheus every second."""
    with running_telemetry(tmp_path_factory.mktemp("telemetry"), prometheus_binary) as running:
        yield running


@contextmanager
def running_telemetry(
    root: Path,
    prometheus_binary: Path,
    rule_files: Sequence[Path] = (),
    targets: Sequence[str] = (),
    scrape_configs: Sequence[dict[str, object]] = (),
) -> Iterator[Telemetry]:
    """The simulator on the waste scenario, scraped every second by a real Prometheus that evaluates
    `rule_files` every second too; and `targets` (HOST:PORT serving /metrics, e.g. a lifecycle
    worker), scraped every second as the job "pdp"; and any other `scrape_configs` (Prometheus's
    own, e.g. a path behind a bearer token)."""
    scenario = root / "scenario.yaml"
    shutil.copy(WASTE_SCENARIO, scenario)
    simulator = serve(scenario, "127.0.0.1", free_port())
    sim_host, sim_port = simulator.server_address[:2]
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": "gpu", "static_configs": [{"targets": [f"{sim_host}:{sim_port}"]}]},
            *([{"job_name": "pdp", "static_configs": [{"targets": list(targets)}]}] if targets else []),
            *scrape_configs,
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (root / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            str(prometheus_binary),
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    client = PrometheusClient(url)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                output = (root / "prometheus.log").read_text()[-2000:]
                pytest.fail(f"prometheus exited with {process.returncode}: {output}")
            try:
                return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("Prometheus to be ready", ready, timeout=120)
        running = Telemetry(f"http://{sim_host}:{sim_port}", url, scenario, client)
        wait_for("Prometheus's first scrapes of the simulator", lambda: running.scrapes() >= 3)
        yield running
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        simulator.shutdown()
        simulator.server_close()

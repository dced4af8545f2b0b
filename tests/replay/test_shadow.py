"""`pdp serve --shadow-bundle`: a candidate decides live traffic beside the active revision, never
changing an answer; disagreements are counted in metrics and logged for `pdp replay --shadow-log`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from pdp.api.client import PdpClient
from pdp.decision import Decision, Outcome
from pdp.metrics import SHADOW_DROPPED
from pdp.replay.report import read_changes
from pdp.replay.shadow import ShadowError, ShadowEvaluator, fetch_bundle
from tests.commands.test_cli import config_args
from tests.replay_fixtures import ROOT, example_intents, tightened_bundle_file
from tests.test_production_mode import free_port

INTENT = example_intents()[0]  # acme-eu deploys without naming a cluster: the tightened rule refuses it


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shadow")
    return tightened_bundle_file(root / "state", root / "tightened")


def _allowed(decision_id: str) -> Decision:
    return Decision(
        Outcome.ALLOW, (), "live-rev", decision_id, datetime.now(UTC), 0.1, "deploy_model", "acme-eu"
    )


def test_a_full_queue_drops_and_counts_and_the_rest_is_compared(candidate: Path, tmp_path: Path) -> None:
    log = tmp_path / "shadow.jsonl"
    shadow = ShadowEvaluator(fetch_bundle(str(candidate)), log, queue_size=2)  # not started: nothing drains
    before = SHADOW_DROPPED._value.get()
    started = time.perf_counter()
    for n in range(5):
        shadow.offer(INTENT, _allowed(f"live-{n}"))
    assert (time.perf_counter() - started) < 0.5  # offer never waits for the candidate
    assert SHADOW_DROPPED._value.get() == before + 3
    shadow.start()
    assert shadow.wait_idle(60)
    shadow.stop()
    changes = read_changes(log.read_text().splitlines())
    assert [c.decision_id for c in changes] == ["live-0", "live-1"]
    assert changes[0].changes[0] == "allow-to-deny"
    assert "RESIDENCY_CLUSTER_REQUIRED" in changes[0].candidate.reasons
    assert log.stat().st_mode & 0o777 == 0o600


def test_a_bad_shadow_bundle_is_named(tmp_path: Path) -> None:
    with pytest.raises(ShadowError, match="plain http off loopback"):
        fetch_bundle("http://bundles.example.com/candidate.tar.gz")
    (tmp_path / "x.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(ShadowError, match="not a wasm bundle"):
        fetch_bundle(str(tmp_path / "x.tar.gz"))


def test_serve_answers_as_before_and_counts_and_logs_the_shadow_disagreements(
    workspace: Path, candidate: Path
) -> None:
    addr, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    shadow_log = workspace / "shadow.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdp.cli", "serve", *config_args(workspace), "--engine", "wasm",
         "--listen", addr, "--metrics-listen", metrics, "--shadow-bundle", candidate.as_uri(),
         "--shadow-log", str(shadow_log)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = []
        while not any(li.startswith("pdp serving on") for li in lines):
            line = proc.stdout.readline()
            assert line, "pdp serve did not start:\n" + "".join(lines)
            lines.append(line)
        assert any(li.startswith("shadow evaluation of bundle") for li in lines)
        with PdpClient(addr, timeout=30) as client:
            answers = [client.decide(intent) for intent in example_intents()]
        # The live answers are the active revision's: the tightened candidate changed none.
        assert answers[0]["outcome"] == "ALLOW"
        deadline = time.monotonic() + 60
        while (time.monotonic() < deadline and not shadow_log.exists()) or not shadow_log.read_text():
            assert time.monotonic() < deadline, "no shadow disagreement logged"
            time.sleep(0.2)
        scraped, expected = "", ""
        while time.monotonic() < deadline:  # the log and the counter agree once the shadow is done
            flips = len(read_changes(shadow_log.read_text().splitlines()))
            expected = f'gpupaas_pdp_shadow_disagreements_total{{change="allow-to-deny"}} {flips}.0'
            scraped = httpx.get(f"http://{metrics}/metrics").text
            if expected in scraped:
                break
            time.sleep(0.2)
        assert expected in scraped
        assert 'gpupaas_pdp_shadow_evaluations_total{result="agree"}' in scraped
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    changes = read_changes(shadow_log.read_text().splitlines())
    assert answers[0]["decision_id"] in {c.decision_id for c in changes}
    assert all(c.changes[0] == "allow-to-deny" and c.tenant != "globex" for c in changes)
    report = subprocess.run(
        [sys.executable, "-m", "pdp.cli", "replay", "--shadow-log", str(shadow_log), "--json",
         "--fail-on", "allow-to-deny"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert report.returncode == 3, report.stderr
    assert json.loads(report.stdout)["counts"]["allow-to-deny"] == len(changes)

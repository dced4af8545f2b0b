"""`pdp` for scripts and people: exit statuses tell allow from deny."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pdp.api.server import PdpServer
from pdp.embedded import EmbeddedPDP
from tests.conftest import EXAMPLES, ROOT


def pdp(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def config_args(workspace: Path) -> list[str]:
    return [
        "--tenants",
        str(workspace / "examples" / "tenants"),
        "--fleet",
        str(workspace / "examples" / "fleet.yaml"),
        "--bundles",
        str(workspace / "bundles"),
        "--keys",
        str(workspace / "keys"),
        "--state",
        str(workspace / "state"),
    ]


def test_validate_reports_file_path_and_problem(workspace: Path, opa_binary: Path) -> None:
    assert pdp("validate", *config_args(workspace)).returncode == 0
    (workspace / "examples" / "tenants" / "globex.yaml").write_text(
        (workspace / "examples" / "tenants" / "globex.yaml")
        .read_text()
        .replace("tier: standard", "tier: platinum")
    )
    out = pdp("validate", *config_args(workspace))
    assert out.returncode == 1
    assert "globex.yaml: tenant.tier: 'platinum' is not one of" in out.stderr


def test_validate_names_every_schema_problem_of_a_document_in_one_run(workspace: Path) -> None:
    globex = workspace / "examples" / "tenants" / "globex.yaml"
    text = globex.read_text()
    for line in ("  isolation: shared\n", "  data_residency: any\n", "  allow_preemption: false\n"):
        assert line in text
        text = text.replace(line, "")
    globex.write_text(text.replace("  tier: standard\n", "  tier: standard\n  colour: blue\n  owner: ops\n"))
    out = pdp("validate", *config_args(workspace))
    assert out.returncode == 1
    for problem in (
        "tenant.isolation: is required",
        "tenant.data_residency: is required",
        "tenant.allow_preemption: is required",
        "tenant.colour: is not a known field",
        "tenant.owner: is not a known field",
    ):
        assert f"globex.yaml: {problem}" in out.stderr, out.stderr


def test_build_prints_the_revision(workspace: Path, opa_binary: Path) -> None:
    out = pdp("build", *config_args(workspace))
    assert out.returncode == 0, out.stderr
    built = json.loads(out.stdout)
    assert built["signed"] is True and Path(built["bundle"]).exists()
    assert (workspace / "bundles" / "gpupaas.tar.gz").exists()


@pytest.fixture(scope="module")
def served(stack: EmbeddedPDP) -> str:
    server = PdpServer(stack.point, listen="127.0.0.1:0").start()
    yield server.address  # type: ignore[misc]
    server.stop()


@pytest.mark.parametrize(
    ("example", "status", "outcome"),
    [
        ("01-acme-eu-deploy-eu.json", 0, "ALLOW"),
        ("02-acme-eu-deploy-us.json", 1, "DENY"),
        ("05-acme-eu-scale-past-entitlement.json", 3, "NEEDS_APPROVAL"),
    ],
)
def test_decide_against_a_server_exit_status(served: str, example: str, status: int, outcome: str) -> None:
    out = pdp("decide", "--server", served, str(EXAMPLES / "intents" / example))
    assert out.returncode == status, out.stderr
    assert json.loads(out.stdout)["outcome"] == outcome


def test_decide_reads_stdin_and_refuses_malformed_intents(served: str) -> None:
    good = (EXAMPLES / "intents" / "02-acme-eu-deploy-us.json").read_text()
    assert pdp("decide", "--server", served, "-", stdin=good).returncode == 1
    out = pdp("decide", "--server", served, "-", stdin='{"kind": "deploy_model", "tenant": "acme-eu"}')
    assert out.returncode == 2 and "deploy_model" in out.stderr
    out = pdp("decide", "--server", served, "-", stdin="{not json")
    assert out.returncode == 2 and "not valid JSON" in out.stderr


def test_decide_embedded_without_a_server(workspace: Path, opa_binary: Path) -> None:
    out = pdp(
        "decide", *config_args(workspace), str(EXAMPLES / "intents" / "03-acme-eu-request-sharing.json")
    )
    assert out.returncode == 1, out.stderr
    decision = json.loads(out.stdout)
    assert [r["code"] for r in decision["reasons"]] == ["SHARING_NOT_ALLOWED"]
    records = pdp("records", "--state", str(workspace / "state"), "--tenant", "acme-eu")
    assert json.loads(records.stdout.splitlines()[0])["decision_id"] == decision["decision_id"]


def test_demo_shows_a_first_decision(workspace: Path, opa_binary: Path) -> None:
    out = pdp("demo", *config_args(workspace))
    assert out.returncode == 0, out.stderr
    assert "first decision (01-acme-eu-deploy-eu.json)" in out.stdout
    assert "02-acme-eu-deploy-us.json" in out.stdout and "RESIDENCY_VIOLATION" in out.stdout


def test_serve_with_a_missing_webhook_certificate_names_the_file(workspace: Path, opa_binary: Path) -> None:
    missing = workspace / "no-such" / "tls.crt"
    result = pdp(
        "serve",
        *config_args(workspace),
        "--listen",
        "127.0.0.1:0",
        "--webhook-listen",
        "127.0.0.1:0",
        "--webhook-cert",
        str(missing),
        "--webhook-key",
        str(workspace / "no-such" / "tls.key"),
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"error: {missing}: cannot be read" in result.stderr


def test_decide_into_a_closed_pipe_ends_quietly(served: str) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written, like `| head` finished
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pdp.cli", "decide", "--server", served],
            input=(EXAMPLES / "intents" / "01-acme-eu-deploy-eu.json").read_text(),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            cwd=ROOT,
            check=False,
        )
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr


def test_sigterm_while_serve_starts_shuts_it_down_cleanly(workspace: Path, opa_binary: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "pdp.cli", "serve", *config_args(workspace), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    bundle = workspace / "bundles" / "gpupaas.tar.gz"
    deadline = time.monotonic() + 120
    while not bundle.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bundle.exists(), "serve never built its bundle"
    process.send_signal(signal.SIGTERM)  # the servers are still coming up
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "Traceback" not in err

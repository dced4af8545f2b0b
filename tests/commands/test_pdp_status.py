"""`pdp status` against two real PDPs (`pdp serve`, each with its OPA and its own bundle folder, as
two clusters' PDPs polling their bundle source): one revision, then skew while a new revision has
reached only one, then the new revision on both. No decision is made meanwhile: the revision each
PDP reports is its engine's active one."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pdp.commands.status import PdpRevision, read_revision, summary
from tests.commands.test_cli import pdp
from tests.conftest import ROOT
from tests.e2e.controlplane import free_port


def _args(workspace: Path, name: str) -> list[str]:
    return [
        "--tenants", str(workspace / "examples" / "tenants"),
        "--fleet", str(workspace / "examples" / "fleet.yaml"),
        "--bundles", str(workspace / f"bundles-{name}"),
        "--keys", str(workspace / "keys"),
        "--state", str(workspace / f"state-{name}"),
    ]  # fmt: skip


@pytest.fixture
def two_pdps(workspace: Path, opa_binary: Path) -> Iterator[dict[str, str]]:
    procs: list[subprocess.Popen[str]] = []
    urls: dict[str, str] = {}
    try:
        for name in ("eu", "us"):
            port = free_port()
            argv = [sys.executable, "-m", "pdp.cli", "serve", *_args(workspace, name),
                    "--listen", "127.0.0.1:0", "--metrics-listen", f"127.0.0.1:{port}"]  # fmt: skip
            proc = subprocess.Popen(
                argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            procs.append(proc)
            assert proc.stdout is not None
            lines = []
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("pdp serving on"):
                    break
            assert lines and lines[-1].startswith("pdp serving on"), "".join(lines)
            urls[name] = f"http://127.0.0.1:{port}/metrics"
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def _status(urls: dict[str, str]) -> tuple[int, dict[str, Any]]:
    out = pdp("status", *(a for u in urls.values() for a in ("--pdp", u)), "--format", "json")
    return out.returncode, json.loads(out.stdout)


def _until(urls: dict[str, str], wanted: Any, timeout: float = 60) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        code, report = _status(urls)
        if wanted(report):
            return code, report
        assert time.monotonic() < deadline, report
        time.sleep(0.5)


def _build(workspace: Path, name: str) -> str:
    built = pdp("build", *_args(workspace, name))
    assert built.returncode == 0, built.stderr
    return str(json.loads(built.stdout)["revision"])


def test_a_new_revision_reaches_two_pdps_and_the_skew_meanwhile_is_reported(
    workspace: Path, two_pdps: dict[str, str]
) -> None:
    eu, us = two_pdps["eu"], two_pdps["us"]
    code, report = _until(two_pdps, lambda r: not r["unreadable"])
    assert code == 0 and report["skew"] == 0 and len(report["revisions"]) == 1, report
    [old] = report["revisions"]

    tenant = workspace / "examples" / "tenants" / "globex.yaml"
    doc = yaml.safe_load(tenant.read_text())
    doc["tenant"]["entitlements"]["H100-80GB"] += 1
    tenant.write_text(yaml.safe_dump(doc))
    new = _build(workspace, "eu")  # published to the EU PDP's bundle source only
    assert new != old
    code, report = _until(two_pdps, lambda r: new in r["revisions"])
    assert code == 1 and report["skew"] == 1, report
    assert report["revisions"] == {new: [eu], old: [us]}
    text = pdp("status", "--pdp", eu, "--pdp", us)
    assert text.returncode == 1 and "REVISION SKEW: 2 revisions among 2 PDPs" in text.stdout, text.stdout
    metrics = pdp("status", "--pdp", eu, "--pdp", us, "--format", "prometheus").stdout
    assert "gpupaas_pdp_fleet_revision_skew 1\n" in metrics

    assert _build(workspace, "us") == new  # the same documents build the same revision
    code, report = _until(two_pdps, lambda r: list(r["revisions"]) == [new])
    assert code == 0 and report["skew"] == 0 and report["revisions"] == {new: sorted([eu, us])}, report


def test_an_unreadable_pdp_is_named_and_exits_2(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/metrics"  # nothing listens there
    out = pdp("status", "--pdp", url)
    assert out.returncode == 2 and f"{url}  unreachable: ConnectError" in out.stdout, out.stdout


def test_the_revision_is_read_from_the_info_gauge() -> None:
    exposition = (
        "# TYPE gpupaas_pdp_bundle_info gauge\n"
        'gpupaas_pdp_bundle_info{revision="r2"} 1.0\n'
        "# TYPE gpupaas_pdp_bundle_age_seconds gauge\n"
        "gpupaas_pdp_bundle_age_seconds 12.5\n"
    )
    assert read_revision(exposition, "a") == PdpRevision("a", "r2", 12.5)
    assert read_revision("", "b").error == "gpupaas_pdp_bundle_info: no active revision yet"
    report = summary([PdpRevision("a", "r2"), PdpRevision("b", "r1"), PdpRevision("c", "r2")])
    assert report["skew"] == 1 and report["revisions"] == {"r1": ["b"], "r2": ["a", "c"]}

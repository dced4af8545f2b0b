"""Using the product API without reading the source: /openapi.json describes the tenant document
field by field, errors name the field and the problem in words, and every CLI command that talks
to the worker takes --url and a token the same way, failing in one line without one."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

import pytest

from pdp.cli import parser
from pdp.schemas import load_schema
from tests.lifecycle.harness import ROOT, Worker, h100_deployment, onboard, tenant_doc

# Subcommands that read the database or files directly (the worker may be down), or are the worker.
LOCAL = {"worker", "audit-verify", "audit-export", "audit-public-key"}  # they read files, not the API


def _cli(*argv: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PDP_LIFECYCLE_TOKEN"}
    if token is not None:
        env["PDP_LIFECYCLE_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "pdp.cli", "lifecycle", *argv],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def _subcommands(sp: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every leaf command under `sp` ("token rotate" for the group `token`)."""
    groups = [a for a in sp._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        return {prefix.strip(): sp}
    out: dict[str, argparse.ArgumentParser] = {}
    for name, child in groups[0].choices.items():
        out.update(_subcommands(child, f"{prefix}{name} "))
    return out


def _lifecycle_commands() -> dict[str, argparse.ArgumentParser]:
    top = parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return _subcommands(sub.choices["lifecycle"])


def test_every_command_that_talks_to_the_worker_takes_url_and_token() -> None:
    commands = _lifecycle_commands()
    assert "effects" in commands and "follow" in commands and "token rotate" in commands
    for name, sp in commands.items():
        options = {o for a in sp._actions for o in a.option_strings}
        if name in LOCAL:
            continue
        assert {"--url", "--token"} <= options, name
        assert "--state" not in options, f"{name} talks to the worker, not to its files"


def test_openapi_embeds_the_tenant_schema(worker: Worker) -> None:
    with worker.client() as c:
        doc: dict[str, Any] = c.get("/openapi.json").json()
    tenant = doc["components"]["schemas"]["TenantDocument"]["properties"]["tenant"]
    source = load_schema("tenant")["$defs"]["tenant"]
    assert tenant["required"] == source["required"] and tenant["additionalProperties"] is False
    assert set(tenant["properties"]) == set(source["properties"])
    # References into the tenant schema's own $defs would not resolve inside OpenAPI: inlined.
    assert tenant["properties"]["name"]["pattern"] == load_schema("tenant")["$defs"]["name"]["pattern"]
    assert "$ref" not in str(tenant)
    assert tenant["properties"]["tier"]["enum"] == ["enterprise", "standard", "spot"]


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"name": None}, "tenant.name is required"),
        ({"tier": "gold"}, "tenant.tier: 'gold' is not one of ['enterprise', 'standard', 'spot']"),
        ({"name": "Bad_Name"}, "tenant.name: 'Bad_Name' does not match the expected form: DNS-1123 label"),
        ({"colour": "red"}, "tenant.colour is not a known field"),
    ],
)
def test_a_bad_tenant_document_is_422_naming_the_field_in_words(
    worker: Worker, change: dict[str, Any], detail: str
) -> None:
    doc = tenant_doc("globex", "usable1", ["usable1-ml"])
    doc["tenant"].update(change)
    doc["tenant"] = {k: v for k, v in doc["tenant"].items() if v is not None}
    with worker.client() as c:
        r = c.post("/v1/tenants", json=doc)
    assert r.status_code == 422 and r.json()["detail"].startswith(detail), r.text


def test_a_bad_request_body_is_422_naming_the_field_in_words(worker: Worker) -> None:
    token = onboard(worker, tenant_doc("globex", "usable2", ["usable2-ml"]))
    with worker.client(token) as c:
        r = c.post("/v1/tenants/usable2/deployments", json=h100_deployment("llm", 1))
        worker.wait_workflow(r.json()["workflow_id"])
        r = c.post("/v1/tenants/usable2/deployments/llm/scale", json={})
        assert r.status_code == 422 and r.json()["detail"] == "target_replicas is required", r.text
        r = c.post("/v1/tenants/usable2/deployments/llm/scale", json={"target_replicas": "many"})
        assert r.json()["detail"].startswith("target_replicas: input should be a valid integer"), r.text
        r = c.post("/v1/tenants/usable2/deployments", json={**h100_deployment("x", -2)})
        assert r.status_code == 422 and r.json()["detail"].startswith("deploy_model.replicas: -2 is less"), (
            r.text
        )


def test_effects_over_the_api_say_dry_run(worker: Worker) -> None:
    out = _cli("effects", "--url", worker.url, token=worker.admin_token)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("mode: dry-run: nothing was applied to a cluster")
    assert any(" would_apply " in line and " Namespace " in line for line in lines[1:]), out.stdout
    with worker.client() as c:
        body = c.get("/v1/effects").json()
    assert body["mode"] == "dry-run" and {e["op"] for e in body["effects"]} <= {"would_apply", "would_delete"}


@pytest.mark.parametrize(
    "argv",
    [("follow", "onboard-x"), ("effects",), ("capacity",), ("approvals",), ("certificate", "t")],
)
def test_a_missing_token_is_one_line(worker: Worker, argv: tuple[str, ...]) -> None:
    out = _cli(*argv, "--url", worker.url)
    assert out.returncode == 2 and out.stdout == "", out
    assert out.stderr.startswith("error: no token: give --token or set PDP_LIFECYCLE_TOKEN")
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_a_refused_or_unreachable_call_is_one_line(worker: Worker) -> None:
    out = _cli("follow", "onboard-x", "--url", worker.url, "--token", "not-a-token")
    assert out.returncode == 1 and out.stderr.strip().splitlines() == [
        "error: GET /v1/workflows/onboard-x: 401 a valid bearer token is required"
    ], out
    out = _cli("effects", "--url", "http://127.0.0.1:9", token="t")
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out
    assert out.stderr.startswith("error: cannot reach the lifecycle worker at http://127.0.0.1:9")

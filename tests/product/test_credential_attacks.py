"""Attacks on the product API's credentials, against a real worker (embedded OPA, DBOS, API):
a rotated-out admin token, an expired or revoked token, a weak or missing admin token, a tenant
reaching for another tenant's or the admin's tokens, a metrics token reaching past its one route."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pdp.product.app import create_app
from tests.lifecycle.harness import ROOT, Worker, onboard, tenant_doc


def lifecycle(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`pdp lifecycle ...`; on a timeout (a worker that should have refused to start but serves)
    its whole process group goes, its OPA included."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdp.cli", "lifecycle", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def without_admin_token(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PDP_LIFECYCLE_ADMIN_TOKEN"}
    return {**env, **extra}


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, out
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: ")
    return line


# refusals at start (nothing starts: no OPA, no database) -------------------------------------
def test_the_worker_refuses_to_start_without_an_admin_credential(tmp_path: Path) -> None:
    line = one_line(lifecycle("worker", "--state", str(tmp_path / "state"), env=without_admin_token()))
    assert "no admin credential: set PDP_LIFECYCLE_ADMIN_TOKEN (or give --admin-token-file)" in line
    assert "openssl rand -hex 32" in line
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    "token", ["changeme", "hunter2hunter2hunter2hunter2hunter2", "x" * 48, secrets.token_hex(8)]
)
def test_weak_admin_tokens_refuse_the_start(tmp_path: Path, token: str) -> None:
    env = without_admin_token(PDP_LIFECYCLE_ADMIN_TOKEN=token)
    line = one_line(lifecycle("worker", "--state", str(tmp_path / "state"), env=env))
    assert "the admin token in PDP_LIFECYCLE_ADMIN_TOKEN is too weak" in line
    assert "at least 32 characters and 128 bits" in line
    assert token not in line
    assert not (tmp_path / "state").exists()


def test_the_admin_token_file_is_read_and_checked(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    line = one_line(lifecycle("worker", "--state", str(tmp_path), "--admin-token-file", str(missing)))
    assert f"--admin-token-file {missing}: cannot be read" in line
    weak = tmp_path / "weak"
    weak.write_text("short\n")
    line = one_line(lifecycle("worker", "--state", str(tmp_path), "--admin-token-file", str(weak)))
    assert f"the admin token in {weak} is too weak" in line


def test_worker_help_says_how_to_provide_the_admin_credential() -> None:
    out = lifecycle("worker", "--help")
    assert out.returncode == 0
    assert "export PDP_LIFECYCLE_ADMIN_TOKEN=$(openssl rand -hex 32)" in out.stdout
    for option in (
        "--admin-token-file",
        "--admin-token-ttl",
        "--tenant-token-ttl",
        "--tls-cert",
        "--insecure",
    ):
        assert option in out.stdout
    assert "needs an admin token" in " ".join(lifecycle("--help").stdout.split())


def test_openapi_declares_the_bearer_scheme() -> None:
    doc = create_app().openapi()
    scheme = doc["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert doc["paths"]["/v1/tenants"]["post"]["security"] == [{"bearer": []}]
    assert doc["paths"]["/v1/admin/tokens"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in doc["paths"]["/healthz"]["get"]
    assert "security" not in doc["paths"]["/v1/certificates/public-key"]["get"]


# against a running worker ---------------------------------------------------------------------
def status(worker: Worker, token: str, path: str = "/v1/tenants") -> tuple[int, str]:
    with worker.client(token) as c:
        r = c.get(path)
    return r.status_code, r.text


def test_a_rotated_out_admin_token_stops_working_when_the_worker_restarts(worker: Worker) -> None:
    old = worker.admin_token
    assert status(worker, old)[0] == 200
    worker.stop()
    worker.admin_token = secrets.token_hex(32)
    worker.start()
    code, body = status(worker, old)
    assert code == 401 and "revoked (superseded: the worker started with admin token" in body
    assert status(worker, worker.admin_token)[0] == 200
    # ... and it cannot come back by restarting with it.
    new = worker.admin_token
    worker.stop()
    worker.admin_token = old
    with pytest.raises(RuntimeError, match="revoked at"):
        worker.start()
    assert worker.proc is not None and worker.proc.returncode == 2
    assert "error: PDP_LIFECYCLE_ADMIN_TOKEN holds admin token tok_" in worker.log()
    worker.admin_token = new
    worker.start()
    assert status(worker, new)[0] == 200


def test_the_admin_rotates_its_token_from_the_cli(worker: Worker) -> None:
    old = worker.admin_token
    out = lifecycle("token", "rotate", "--admin", "--url", worker.url, "--token", old)
    assert out.returncode == 0, out.stderr
    issued = json.loads(out.stdout)
    assert issued["role"] == "admin" and issued["token_id"].startswith("tok_")
    worker.admin_token = issued["token"]
    assert status(worker, old)[0] == 401
    assert status(worker, worker.admin_token)[0] == 200
    whoami = lifecycle("token", "whoami", "--url", worker.url, "--token", worker.admin_token)
    assert json.loads(whoami.stdout)["token_id"] == issued["token_id"]
    listed = json.loads(
        lifecycle("token", "list", "--admin", "--url", worker.url, "--token", worker.admin_token).stdout
    )
    assert [t["token_id"] for t in listed if t["active"]] == [issued["token_id"]]
    # The only admin token cannot be revoked (that would lock the worker); rotating is the way.
    refused = lifecycle(
        "token", "revoke", "--admin", issued["token_id"], "--url", worker.url, "--token", worker.admin_token
    )
    assert refused.returncode == 1 and "only admin token" in refused.stdout


def test_tenants_rotate_their_own_tokens_and_reach_no_other(worker: Worker) -> None:
    first = onboard(worker, tenant_doc("globex", "tokacme", ["tokacme-ml"]))
    other = onboard(worker, tenant_doc("globex", "tokother", ["tokother-ml"]))
    with worker.client(first) as c:
        rotated = c.post("/v1/tenants/tokacme/tokens", json={})
        assert rotated.status_code == 201, rotated.text
        second: dict[str, Any] = rotated.json()
    code, body = status(worker, first, "/v1/tenants/tokacme")
    assert code == 401 and "revoked (rotated by tenant:tokacme)" in body
    assert status(worker, second["token"], "/v1/tenants/tokacme")[0] == 200
    with worker.client(second["token"]) as c:
        assert c.get("/v1/tenants/tokother/tokens").status_code == 404
        assert c.post("/v1/tenants/tokother/tokens", json={}).status_code == 404
        assert c.get("/v1/admin/tokens").status_code == 403
        assert c.post("/v1/admin/tokens", json={}).status_code == 403
        # Onboarding is the admin's alone (tenants.onboard checks, for the API and the console).
        made = c.post("/v1/tenants", json=tenant_doc("globex", "tokrogue", ["tokrogue-ml"]))
        assert made.status_code == 403 and "needs an admin token" in made.text, made.text
        assert worker.client().get("/v1/tenants/tokrogue").status_code == 404
        theirs = [t["token_id"] for t in worker.client().get("/v1/tenants/tokother/tokens").json()]
        assert c.post(f"/v1/tenants/tokacme/tokens/{theirs[0]}/revoke", json={}).status_code == 404
    assert status(worker, other, "/v1/tenants/tokother")[0] == 200
    # The admin revokes the tenant's token: refused on its next request.
    with worker.client() as c:
        r = c.post(f"/v1/tenants/tokacme/tokens/{second['token_id']}/revoke", json={"reason": "leaked"})
        assert r.json() == {"token_id": second["token_id"], "revoked": True, "already_revoked": False}
    code, body = status(worker, second["token"], "/v1/tenants/tokacme")
    assert code == 401 and "revoked (leaked)" in body


def _every_authenticated_call() -> list[tuple[str, str]]:
    """(method, path) of every route the API's schema says needs a token, path parameters filled
    with names that exist in no worker."""
    calls = []
    for path, methods in create_app().openapi()["paths"].items():
        for method, operation in methods.items():
            if "security" in operation:
                calls.append((method.upper(), path.replace("{", "x").replace("}", "")))
    return calls


def test_a_metrics_token_reads_the_tenant_gauges_and_nothing_else(worker: Worker) -> None:
    onboard(worker, tenant_doc("globex", "metricsacme", ["metricsacme-ml"]))
    out = lifecycle("token", "rotate", "--metrics", "--url", worker.url, "--token", worker.admin_token)
    assert out.returncode == 0, out.stderr
    issued = json.loads(out.stdout)
    assert issued["role"] == "metrics" and issued["tenant"] is None
    with worker.client(issued["token"]) as c:
        gauges = c.get("/metrics/tenants")
        assert gauges.status_code == 200, gauges.text
        assert 'gpupaas_pdp_tenant_entitled_gpus{gpu_class="H100-80GB",tenant="metricsacme"}' in gauges.text
        calls = _every_authenticated_call()
        assert len(calls) > 30  # the sweep reaches the whole API, not a handful of routes
        for method, path in calls:
            r = c.request(method, path, json={})
            assert r.status_code == 403 and "is a metrics token" in r.text, (method, path, r.text)
        # A path naming a real tenant is refused the same way, before anything is looked up.
        assert c.get("/v1/tenants/metricsacme").status_code == 403
    # Only the admin issues them; a tenant reads neither the gauges nor the metrics tokens.
    tenant = onboard(worker, tenant_doc("globex", "metricsrogue", ["metricsrogue-ml"]))
    with worker.client(tenant) as c:
        assert c.get("/metrics/tenants").status_code == 403
        assert c.get("/v1/admin/metrics-tokens").status_code == 403
        assert c.post("/v1/admin/metrics-tokens", json={}).status_code == 403
    assert worker.client().get("/metrics/tenants").status_code == 200  # the admin's token reads them too
    # Rotating revokes the earlier one at once; the admin can revoke the current one.
    with worker.client() as c:
        second = c.post("/v1/admin/metrics-tokens", json={}).json()
        listed = c.get("/v1/admin/metrics-tokens").json()
        assert [t["token_id"] for t in listed if t["active"]] == [second["token_id"]]
    code, body = status(worker, issued["token"], "/metrics/tenants")
    assert code == 401 and "revoked (rotated by admin)" in body
    with worker.client() as c:
        r = c.post(f"/v1/admin/metrics-tokens/{second['token_id']}/revoke", json={"reason": "scraper gone"})
        assert r.json()["revoked"] is True
    assert status(worker, second["token"], "/metrics/tenants")[0] == 401


def test_an_expired_token_is_refused(worker: Worker) -> None:
    onboard(worker, tenant_doc("globex", "tokshort", ["tokshort-ml"]))
    with worker.client() as c:
        r = c.post("/v1/tenants/tokshort/tokens", json={"ttl_seconds": 15})
        assert r.status_code == 201, r.text
        short = r.json()
        too_long = c.post("/v1/tenants/tokshort/tokens", json={"ttl_seconds": 10**9})
        assert too_long.status_code == 422 and "ttl_seconds" in too_long.text
    assert status(worker, short["token"], "/v1/whoami")[0] == 200
    deadline = time.monotonic() + 60
    while (result := status(worker, short["token"], "/v1/whoami"))[0] == 200:
        assert time.monotonic() < deadline, "the token never expired"
        time.sleep(0.5)
    assert result[0] == 401 and f"{short['token_id']} expired at" in result[1]


def test_credential_changes_are_in_the_audit_trail_and_it_verifies(worker: Worker) -> None:
    with worker.client() as c:
        trail = c.get("/v1/audit").text
        verified = c.get("/v1/audit/verify").json()
    assert verified["ok"], verified
    events = [json.loads(line).get("event") for line in trail.splitlines()]
    assert events.count("credential.issued") >= 5 and events.count("credential.revoked") >= 4
    assert worker.admin_token not in trail

"""The lifecycle's state stays out of the repository: a worker reading the repository's own example
documents (the defaults of --tenants and --fleet) writes its tenant documents, fleet and bundle
under --state, and the checkout is unchanged after onboarding, a quota change and offboarding.
The API and the bundle agree on which tenants exist. The worker says which adapter it runs."""

from __future__ import annotations

import hashlib
import stat
import subprocess
from pathlib import Path

import yaml

from tests.lifecycle.harness import ROOT, Worker, audit_records, h100_deployment, onboard, tenant_doc

DECLARED = ("acme-eu", "globex", "initech-spot")


def _git_status() -> str:
    return subprocess.run(
        # Tracked and untracked files; ignored ones (bytecode caches) are not part of the checkout.
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def _tree_hash(folder: Path) -> str:
    """Names, modes and contents of every file under the folder."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder)}:{path.stat().st_mode:o}:".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_a_worker_on_the_repositorys_examples_leaves_the_checkout_unchanged(tmp_path: Path) -> None:
    status, examples = _git_status(), _tree_hash(ROOT / "examples")
    bundles = sorted((p.name, p.stat().st_mtime_ns) for p in (ROOT / "bundles").glob("*"))
    worker = Worker(tmp_path, examples=ROOT / "examples", bundles=False).start()
    state = tmp_path / "state" / "lifecycle"
    try:
        assert "lifecycle adapter: dry-run" in worker.log()
        token = onboard(worker, tenant_doc("globex", "repocheck", ["repocheck-ml"]))
        doc = state / "tenants" / "repocheck.yaml"
        assert yaml.safe_load(doc.read_text())["tenant"]["name"] == "repocheck"
        assert stat.S_IMODE(doc.stat().st_mode) == 0o600
        with worker.client(token) as c:
            r = c.post("/v1/tenants/repocheck/deployments", json=h100_deployment("llm", 1))
            assert r.status_code == 202 and r.json()["outcome"] == "ALLOW", r.text  # the bundle knows it
            assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"
            r = c.post("/v1/tenants/repocheck/quotas", json={"entitlements": {"H100-80GB": 6}})
            assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"
            r = c.post("/v1/tenants/repocheck/offboard", json={"reason": "test"})
            assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "offboarded"
        assert not doc.exists()
        # The bundle is the worker's own, under its state (--bundles not given).
        assert list((state / "bundles").glob("*.tar.gz"))
    finally:
        worker.stop()
    assert _tree_hash(ROOT / "examples") == examples
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (ROOT / "bundles").glob("*")) == bundles
    assert _git_status() == status


def test_declared_tenants_are_in_the_api_as_in_the_bundle(tmp_path: Path) -> None:
    worker = Worker(tmp_path).start()
    try:
        with worker.client() as c:
            listed = {t["name"]: t["state"] for t in c.get("/v1/tenants").json()}
            assert listed == {name: "active" for name in DECLARED}
            for name in DECLARED:
                doc = yaml.safe_load((worker.examples / "tenants" / f"{name}.yaml").read_text())
                assert c.get(f"/v1/tenants/{name}").json()["policy"] == doc["tenant"]
                r = c.post("/v1/tenants", json=doc)
                assert r.status_code == 409 and "already exists" in r.json()["detail"], r.text
            # In the bundle too: the PDP places a declared tenant's deployment.
            r = c.post("/v1/tenants/globex/deployments", json=h100_deployment("serve", 1))
            assert r.status_code == 202 and r.json()["outcome"] == "ALLOW", r.text
            imported = [r for r in audit_records(c.get("/v1/audit").text) if r["event"] == "tenant.imported"]
        assert sorted(r["tenant"] for r in imported) == sorted(DECLARED)
        globex = next(r for r in imported if r["tenant"] == "globex")
        assert globex["detail"]["source"] == str(worker.examples / "tenants" / "globex.yaml")
        assert len(globex["detail"]["sha256"]) == 64
        # A restart imports nothing again.
        worker.stop()
        worker.start()
        with worker.client() as c:
            again = [r for r in audit_records(c.get("/v1/audit").text) if r["event"] == "tenant.imported"]
        assert len(again) == len(DECLARED)
    finally:
        worker.stop()

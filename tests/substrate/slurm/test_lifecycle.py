"""Onboarding, quota changes, compensation and offboarding reach the real Slurm cluster through the
lifecycle's adapter interface: a lifecycle worker process (`pdp lifecycle worker --slurm-conf`)
whose Slurm objects go to the SlurmAdapter (sacctmgr) and Kubernetes objects to the dry run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from tests.lifecycle.harness import Worker, onboard, tenant_doc
from tests.substrate.slurm.conftest import SlurmWorld


@pytest.fixture(scope="module")
def worker(slurm_world: SlurmWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    root = tmp_path_factory.mktemp("lifecycle-slurm")
    users = root / "slurm-users.yaml"
    users.write_text(yaml.safe_dump({"*": [slurm_world.cluster.user]}))
    w = Worker(root, slurm_conf=str(slurm_world.cluster.etc / "slurm.conf"), slurm_users=str(users)).start()
    try:
        yield w
    finally:
        w.stop()


def associations(slurm: SlurmWorld, account: str) -> list[str]:
    return slurm.cluster.run(
        "sacctmgr", "-nP", "show", "assoc", "where", f"account={account}", "format=user,partition,qos,grptres"
    ).stdout.splitlines()


def accounts(slurm: SlurmWorld) -> list[str]:
    return slurm.cluster.run("sacctmgr", "-nP", "show", "account", "format=account").stdout.split()


def test_onboarding_creates_the_account_limits_qos_and_partition_access(
    worker: Worker, slurm: SlurmWorld
) -> None:
    onboard(worker, tenant_doc("globex", "hooli", ["hooli-ml"], display_name="Hooli"))
    rows = associations(slurm, "hooli")
    assert "||gpupaas-standard|gres/gpu:a100_40gb=4,gres/gpu:h100_80gb=8,gres/gpu=12" in rows
    partitions = sorted(r.split("|")[1] for r in rows if r.startswith(slurm.cluster.user))
    assert partitions == [
        "eu-a100-timeslice",
        "eu-h100-shared",
        "us-a100-mig",
        "us-a100-spot",
        "us-h100-shared",
    ]
    with worker.client() as c:
        trail = c.get("/v1/audit", params={"tenant": "hooli"}).text
    assert "SlurmAccount//hooli" in trail and "SlurmAssociations//hooli" in trail
    # The account works in Slurm: a job without GPUs (not the policy's business) runs under it.
    done = slurm.cluster.sbatch("hooli", None, partition="eu-h100-shared")
    assert done.returncode == 0, done.stderr


def test_a_quota_change_reaches_the_association_limit(worker: Worker, slurm: SlurmWorld) -> None:
    with worker.client() as c:
        r = c.post("/v1/tenants/hooli/quotas", json={"entitlements": {"H100-80GB": 2, "A100-40GB": 4}})
        assert r.status_code == 202, r.text
        wf = worker.wait_workflow(r.json()["workflow_id"])
    assert wf["status"] == "SUCCESS" and wf["output"]["status"] == "applied", wf
    assert "||gpupaas-standard|gres/gpu:a100_40gb=4,gres/gpu:h100_80gb=2,gres/gpu=6" in associations(
        slurm, "hooli"
    )


def test_an_sla_upgrade_moves_the_account_to_the_new_tiers_qos(worker: Worker, slurm: SlurmWorld) -> None:
    with worker.client() as c:
        r = c.post("/v1/tenants/hooli/sla", json={"tier": "enterprise"})
    assert r.status_code == 202 and r.json()["reason_codes"] == ["SLA_APPROVAL_REQUIRED"], r.text
    worker.approve(worker.wait_approval("hooli")["id"])
    wf = worker.wait_workflow(r.json()["workflow_id"])
    assert wf["output"]["status"] == "applied", wf
    rows = associations(slurm, "hooli")
    assert "||gpupaas-enterprise|gres/gpu:a100_40gb=4,gres/gpu:h100_80gb=2,gres/gpu=6" in rows
    assert all("|gpupaas-enterprise|" in row for row in rows)


def test_a_failed_onboarding_removes_what_it_made_in_slurm(worker: Worker, slurm: SlurmWorld) -> None:
    worker.kill9()
    worker.start(env={"PDP_LIFECYCLE_FAIL_AT": "apply:network"})
    try:
        with worker.client() as c:
            assert (
                c.post("/v1/tenants", json=tenant_doc("globex", "hooli2", ["hooli2-ml"])).status_code == 202
            )
        wf = worker.wait_workflow("onboard-hooli2")
        assert wf["output"]["status"] == "failed"
        assert wf["output"]["compensated"] == ["priority", "kueue", "limits", "quota", "namespaces"]
        assert "hooli2" not in accounts(slurm)
        assert associations(slurm, "hooli2") == []
    finally:
        worker.kill9()
        worker.start()


def test_offboarding_cancels_the_jobs_and_removes_the_account(worker: Worker, slurm: SlurmWorld) -> None:
    done = slurm.cluster.sbatch("hooli", None, partition="us-h100-shared", name="left-running")
    assert done.returncode == 0, done.stderr
    with worker.client() as c:
        r = c.post("/v1/tenants/hooli/offboard", json={"reason": "contract ended"})
        assert r.status_code == 202, r.text
    # hooli is an enterprise tenant since the SLA upgrade: offboarding needs approval.
    worker.approve(worker.wait_approval("hooli")["id"])
    wf = worker.wait_workflow("offboard-hooli", timeout=120)
    assert wf["status"] == "SUCCESS" and wf["output"]["status"] == "offboarded", wf
    assert "hooli" not in accounts(slurm)
    assert slurm.cluster.run("squeue", "-h", "-A", "hooli").stdout.strip() == ""
    with worker.client() as c:
        trail = c.get("/v1/audit", params={"tenant": "hooli"}).text
    assert "objects.verified_absent" in trail and "SlurmAccount//hooli" in trail

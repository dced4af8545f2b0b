"""Real sbatch jobs against a real slurmctld whose job_submit.lua asks the PDP: acceptance and
pinning, policy refusals with reason codes and decision ids, association limits, QOS preemption,
scontrol update, and failing closed when the PDP cannot answer."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import replace

from pdp.substrate.slurm import lua
from tests.freeze import frozen
from tests.substrate.slurm.conftest import FLEET, SlurmWorld

H100 = "gpu:h100_80gb"
A100 = "gpu:a100_40gb"
DECISION_ID = re.compile(r"decision ([0-9a-f-]{36})")


def job_id(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(";")[0]


def running(job: dict[str, str]) -> bool:
    return job["JobState"] == "RUNNING"


def test_the_cluster_models_the_fleet(slurm: SlurmWorld) -> None:
    out = slurm.cluster.run("sinfo", "-h", "-o", "%P %D %G").stdout.split("\n")
    partitions = {line.split()[0]: line.split()[2] for line in out if line.strip()}
    assert partitions["acme-h100-dedicated"] == "gpu:h100_80gb:8"
    assert partitions["us-a100-spot"] == "gpu:a100_40gb:8"
    assert len(partitions) == 7
    associations = slurm.cluster.run(
        "sacctmgr", "-nP", "show", "assoc", "where", "account=acme-eu", "format=user,partition,qos,grptres"
    ).stdout.splitlines()
    assert "||gpupaas-enterprise|gres/gpu:h100_80gb=4,gres/gpu=4" in associations
    assert f"{slurm.cluster.user}|acme-h100-dedicated|gpupaas-enterprise|" in associations
    # Residency and isolation: no association of acme-eu anywhere else.
    assert len([a for a in associations if a.startswith(slurm.cluster.user)]) == 1


def test_a_job_without_partition_is_accepted_and_pinned_to_the_tenants_pool(slurm: SlurmWorld) -> None:
    job = job_id(slurm.cluster.sbatch("acme-eu", f"{H100}:2", name="train"))
    state = slurm.cluster.wait_job(job, running)
    assert state["Partition"] == "acme-h100-dedicated"
    assert state["QOS"] == "gpupaas-enterprise"
    assert "gres/gpu:h100_80gb=2" in state["TRES"]


def test_pinning_keeps_only_the_partitions_the_policy_admits(slurm: SlurmWorld) -> None:
    asked = "us-h100-shared,eu-h100-shared,acme-h100-dedicated,eu-mi300x-shared"
    job = job_id(slurm.cluster.sbatch("acme-eu", f"{H100}:1", partition=asked))
    assert slurm.cluster.job(job)["Partition"] == "acme-h100-dedicated"
    # The first partition the policy admits, in the job's order (one: see job_submit.lua).
    shared = job_id(slurm.cluster.sbatch("globex", f"{H100}:1", partition=asked))
    assert slurm.cluster.job(shared)["Partition"] == "us-h100-shared"
    eu_first = job_id(slurm.cluster.sbatch("globex", f"{H100}:1", partition="eu-h100-shared,us-h100-shared"))
    assert slurm.cluster.job(eu_first)["Partition"] == "eu-h100-shared"


def test_a_job_outside_the_residency_is_refused_with_the_reason_and_decision(slurm: SlurmWorld) -> None:
    done = slurm.cluster.sbatch("acme-eu", f"{H100}:2", partition="us-h100-shared")
    assert done.returncode != 0
    assert "RESIDENCY_VIOLATION" in done.stderr
    assert 'tenant "acme-eu" (data_residency eu-only)' in done.stderr
    assert "Access/permission denied" in done.stderr
    found = DECISION_ID.search(done.stderr)
    assert found, done.stderr
    # The id is the PDP's own: the decision is in its log, DENY, with the same reason.
    assert slurm.stack.decision_log is not None
    records = [r for r in slurm.stack.decision_log.query(tenant="acme-eu") if r.decision_id == found.group(1)]
    assert len(records) == 1 and records[0].outcome == "DENY"
    assert slurm.cluster.run("squeue", "-h", "-A", "acme-eu").stdout.strip() == ""


def test_other_refusals_name_their_reason(slurm: SlurmWorld) -> None:
    over = slurm.cluster.sbatch("acme-eu", f"{H100}:8")
    assert over.returncode != 0 and "NEEDS_APPROVAL QUOTA_APPROVAL_REQUIRED" in over.stderr
    foreign = slurm.cluster.sbatch("globex", f"{H100}:1", partition="acme-h100-dedicated")
    assert foreign.returncode != 0
    assert "pool acme-h100-dedicated is outside the isolation of tenant globex" in foreign.stderr
    untyped = slurm.cluster.sbatch("acme-eu", "gpu:2")
    assert untyped.returncode != 0 and "name the GPU type" in untyped.stderr
    assert "h100_80gb" in untyped.stderr
    class_ = slurm.cluster.sbatch("initech-spot", f"{H100}:1", partition="us-h100-shared")
    assert class_.returncode != 0 and "GPU_CLASS_NOT_ENTITLED" in class_.stderr
    unknown = slurm.cluster.sbatch("nobody", f"{H100}:1", partition="eu-h100-shared")
    assert unknown.returncode != 0 and "TENANT_UNKNOWN" in unknown.stderr


def test_jobs_without_gpus_are_not_asked_about(slurm: SlurmWorld) -> None:
    job = job_id(slurm.cluster.sbatch("globex", None, partition="eu-h100-shared"))
    assert slurm.cluster.wait_job(job, running)["Partition"] == "eu-h100-shared"


def test_the_association_limit_keeps_jobs_pending(slurm: SlurmWorld) -> None:
    first = job_id(slurm.cluster.sbatch("acme-eu", f"{H100}:4", name="all-four"))
    slurm.cluster.wait_job(first, running)
    # Allowed by policy (2 <= 4 per job); the account's GrpTRES holds it back.
    second = job_id(slurm.cluster.sbatch("acme-eu", f"{H100}:2", name="two-more"))
    state = slurm.cluster.wait_job(second, lambda j: j["Reason"] != "None")
    assert state["JobState"] == "PENDING"
    assert state["Reason"] == "AssocGrpGRES"
    slurm.cluster.run("scancel", first)
    slurm.cluster.wait_job(second, running)


def test_spot_jobs_are_preempted_and_non_preemptible_ones_never(slurm: SlurmWorld) -> None:
    spot = job_id(slurm.cluster.sbatch("initech-spot", f"{A100}:8", partition="us-a100-spot", name="spot"))
    slurm.cluster.wait_job(spot, running)
    # A standard tenant's job needs the spot job's GPUs: the spot QOS is in its Preempt list.
    standard = job_id(slurm.cluster.sbatch("globex", f"{A100}:4", partition="us-a100-spot", name="std"))
    slurm.cluster.wait_job(standard, running, timeout=90)
    preempted = slurm.cluster.job(spot)
    # Preempted and requeued (the preemptible QOS's PreemptMode), not cancelled.
    assert preempted["JobState"] in ("PENDING", "REQUEUED"), preempted
    assert preempted["Restarts"] == "1"
    # The preempted run is an earlier record of the requeued job (sacct --duplicates), and
    # slurmdbd receives it a moment after slurmctld acted.
    deadline, runs = time.monotonic() + 30, []
    while "PREEMPTED" not in runs and time.monotonic() < deadline:
        runs = slurm.cluster.run("sacct", "-D", "-n", "-X", "-P", "-j", spot, "-o", "State").stdout.split()
        time.sleep(0.5)
    assert runs[0] == "PREEMPTED", runs
    # An enterprise job cannot take the standard job's GPUs: globex does not allow preemption.
    enterprise = job_id(slurm.cluster.sbatch("umbrella", f"{A100}:8", partition="us-a100-spot", name="ent"))
    state = slurm.cluster.wait_job(enterprise, lambda j: j["Reason"] not in ("None", ""))
    assert (state["JobState"], state["Reason"]) == ("PENDING", "Resources")
    time.sleep(3)  # a few scheduler passes (sched_min_interval=2, bf_interval=1)
    assert slurm.cluster.job(standard)["JobState"] == "RUNNING"
    assert slurm.cluster.job(enterprise)["JobState"] == "PENDING"


def test_scontrol_update_is_decided_like_a_submission(slurm: SlurmWorld) -> None:
    job = job_id(slurm.cluster.sbatch("acme-eu", f"{H100}:1", extra=["--hold"]))
    moved = slurm.cluster.run("scontrol", "update", f"JobId={job}", "Partition=us-h100-shared", check=False)
    assert moved.returncode != 0
    assert slurm.cluster.job(job)["Partition"] == "acme-h100-dedicated"
    more = slurm.cluster.run("scontrol", "update", f"JobId={job}", f"Gres={H100}:8", check=False)
    assert more.returncode != 0
    fine = slurm.cluster.run("scontrol", "update", f"JobId={job}", f"Gres={H100}:2", check=False)
    assert fine.returncode == 0, fine.stderr


def _reconfigure(slurm: SlurmWorld, hook: lua.HookSettings) -> None:
    """New hook settings; job_submit.lua reads them for every GPU job, no reconfigure needed."""
    lua.install(slurm.cluster.etc, FLEET, hook)


def _refused(slurm: SlurmWorld) -> str:
    done = slurm.cluster.sbatch("acme-eu", f"{H100}:1")
    assert done.returncode != 0, "a GPU job was accepted without a decision"
    assert "GPU job refused, fail closed" in done.stderr
    return done.stderr


def test_gpu_jobs_fail_closed_when_the_pdp_is_unreachable(slurm: SlurmWorld, restore_hook: object) -> None:
    dead = slurm.root / "run" / "nobody-listens.sock"
    assert slurm.cluster.hook is not None
    _reconfigure(slurm, lua.HookSettings(pdp_socket=dead, timeout=0.5, cache_seconds=0))
    started = time.monotonic()
    assert f"connect to {dead}: " in _refused(slurm)
    assert time.monotonic() - started < 5
    # Jobs without GPUs are not policy's business and still run.
    job_id(slurm.cluster.sbatch("globex", None, partition="eu-h100-shared"))


def test_a_wrong_token_fails_closed(slurm: SlurmWorld, restore_hook: object, tmp_path: object) -> None:
    from pathlib import Path

    bad = Path(str(tmp_path)) / "wrong.token"
    bad.write_text("not-the-token\n")
    assert slurm.cluster.hook is not None
    _reconfigure(
        slurm,
        replace(slurm.cluster.hook, token_file=bad),
    )
    assert "PDP answered HTTP 401" in _refused(slurm)


def test_a_broken_settings_file_fails_closed(slurm: SlurmWorld, restore_hook: object) -> None:
    (slurm.cluster.etc / lua.SETTINGS).write_text("return {")
    assert "the policy check is not configured" in _refused(slurm)


def test_a_stalled_engine_is_a_deny_within_the_deadline(slurm: SlurmWorld) -> None:
    sidecar = slurm.stack.sidecar
    assert sidecar is not None and sidecar.pid is not None
    with frozen(sidecar.pid):  # every OPA thread stopped first (tests/freeze.py)
        started = time.monotonic()
        done = slurm.cluster.sbatch("acme-eu", f"{H100}:1")
        elapsed = time.monotonic() - started
    assert done.returncode != 0
    assert "ENGINE_TIMEOUT" in done.stderr
    # The hook's budget is 1 s; sbatch itself adds its own round trips.
    assert elapsed < 5, elapsed

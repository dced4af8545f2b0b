"""The gpupaas.pdp.slurm_tenant role, run by a real ansible-playbook against localhost: the PDP
allows the entitlements, then `pdp slurm realize` makes the account on the real cluster; a second
run changes nothing; entitlements the policy has not approved fail the play and reach no Slurm."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

from tests.ansible import run_playbook
from tests.substrate.slurm.conftest import WAYNE, SlurmWorld


def role_play(slurm: SlurmWorld, tenant: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    plays = [{"hosts": "localhost", "gather_facts": False, "roles": [{"role": "gpupaas.pdp.slurm_tenant"}]}]
    variables = {
        "gpupaas_tenant": tenant,
        "gpupaas_slurm_users": [slurm.cluster.user],
        "gpupaas_pdp_url": slurm.http.url,
        "gpupaas_pdp_token_file": str(slurm.token_file),
        "gpupaas_pdp_command": str(Path(sys.executable).parent / "pdp"),
        "gpupaas_fleet_file": str(slurm.root / "examples" / "fleet.yaml"),
        "gpupaas_slurm_conf": str(slurm.cluster.etc / "slurm.conf"),
    }
    return plays, variables


def wayne_associations(slurm: SlurmWorld) -> list[str]:
    return slurm.cluster.run(
        "sacctmgr", "-nP", "show", "assoc", "where", "account=wayne", "format=user,partition,qos,grptres"
    ).stdout.splitlines()


def test_the_role_realizes_a_tenant_once_and_only_what_the_policy_allows(
    slurm: SlurmWorld, tmp_path: Path
) -> None:
    over = copy.deepcopy(WAYNE)
    over["tenant"]["entitlements"]["H100-80GB"] = 4
    plays, variables = role_play(slurm, over)
    refused = run_playbook(tmp_path, plays, extra_vars=variables)
    assert refused.returncode == 2, refused.stdout[-3000:]
    assert "NEEDS_APPROVAL QUOTA_APPROVAL_REQUIRED" in refused.stdout
    assert wayne_associations(slurm) == []  # nothing reached Slurm

    plays, variables = role_play(slurm, WAYNE)
    first = run_playbook(tmp_path, plays, extra_vars=variables)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert "changed=1" in first.stdout
    rows = wayne_associations(slurm)
    assert "||gpupaas-standard|gres/gpu:h100_80gb=2,gres/gpu=2" in rows
    assert f"{slurm.cluster.user}|eu-h100-shared|gpupaas-standard|" in rows and len(rows) == 2

    again = run_playbook(tmp_path, plays, extra_vars=variables)
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]
    # The realized account is usable, and job_submit.lua decides its GPU jobs.
    done = slurm.cluster.sbatch("wayne", "gpu:h100_80gb:1")
    assert done.returncode == 0, done.stderr
    assert slurm.cluster.job(done.stdout.strip().split(";")[0])["Partition"] == "eu-h100-shared"

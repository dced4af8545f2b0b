"""The hook decides the most a job may be allocated, not the least: node ranges, tasks that may
spread over nodes, --gpus-per-node, array jobs, and `scontrol update` raising any of them (issue
28, hole 3). acme-eu is entitled to 4 H100s on a pool of 8: above 4 the policy asks for approval,
above 8 it denies (capacity); either way the hook refuses."""

from __future__ import annotations

from tests.substrate.slurm.conftest import SlurmWorld
from tests.substrate.slurm.test_enforcement import H100, job_id

OVER = "GPU job refused by policy"


def test_a_node_range_is_decided_at_its_maximum(slurm: SlurmWorld) -> None:
    # 4 GPUs on each of up to 4 nodes: Slurm may allocate 16.
    done = slurm.cluster.sbatch("acme-eu", f"{H100}:4", extra=["--nodes=1-4"])
    assert done.returncode != 0, "a job that may get 16 GPUs was decided at 4"
    assert OVER in done.stderr
    # The same GPUs on at most one node are within the entitlement.
    job_id(slurm.cluster.sbatch("acme-eu", f"{H100}:4", extra=["--nodes=1-1"]))


def test_gpus_per_node_count_on_every_node_the_job_may_get(slurm: SlurmWorld) -> None:
    done = slurm.cluster.sbatch("acme-eu", None, extra=["--nodes=1-2", "--gpus-per-node=h100_80gb:4"])
    assert done.returncode != 0 and OVER in done.stderr, done.stderr


def test_tasks_without_a_node_count_may_spread_over_nodes(slurm: SlurmWorld) -> None:
    # Four tasks and no --nodes: Slurm may place them on four nodes, each with 2 GPUs.
    spread = slurm.cluster.run(
        "sbatch", "--parsable", "--account=acme-eu", f"--gres={H100}:2", "--ntasks=4",
        "--time=30", f"--chdir={slurm.cluster.jobs}", "--wrap=sleep 600", check=False,
    )  # fmt: skip
    assert spread.returncode != 0 and OVER in spread.stderr, spread.stderr
    # Bounded to one node they are within the entitlement.
    job_id(slurm.cluster.sbatch("acme-eu", f"{H100}:2", nodes=1, extra=["--ntasks=4"]))
    # Two tasks may take two nodes (4 GPUs): allowed, and Slurm is held to the two decided.
    two = slurm.cluster.run(
        "sbatch", "--parsable", "--account=acme-eu", f"--gres={H100}:2", "--ntasks=2", "--hold",
        "--time=30", f"--chdir={slurm.cluster.jobs}", "--wrap=sleep 600", check=False,
    )  # fmt: skip
    # (Slurm shows "1" for a job whose maximum is left open.)
    assert slurm.cluster.job(job_id(two))["NumNodes"] == "1-2"


def test_every_element_of_an_array_counts_or_the_concurrent_ones(slurm: SlurmWorld) -> None:
    done = slurm.cluster.sbatch("acme-eu", f"{H100}:2", extra=["--array=0-3"])
    assert done.returncode != 0 and OVER in done.stderr, done.stderr
    # At most two elements at once: 4 GPUs, within the entitlement.
    job_id(slurm.cluster.sbatch("acme-eu", f"{H100}:2", extra=["--array=0-3%2"]))


def test_an_update_that_raises_an_arrays_throttle_or_nodes_is_decided(slurm: SlurmWorld) -> None:
    job = job_id(slurm.cluster.sbatch("acme-eu", f"{H100}:2", extra=["--hold", "--array=0-3%1"]))
    update = ("scontrol", "update", f"JobId={job}")
    assert slurm.cluster.run(*update, "ArrayTaskThrottle=2", check=False).returncode == 0
    raised = slurm.cluster.run(*update, "ArrayTaskThrottle=4", check=False)
    assert raised.returncode != 0, "four elements at once (8 GPUs) were not decided"
    unlimited = slurm.cluster.run(*update, "ArrayTaskThrottle=0", check=False)
    assert unlimited.returncode != 0, "lifting the throttle (8 GPUs) was not decided"
    # Two nodes for each of the pending elements: 16 GPUs.
    wider = slurm.cluster.run(*update, "NumNodes=1-2", check=False)
    assert wider.returncode != 0, "two nodes per element of a four-element array were not decided"


def test_an_update_that_raises_only_the_maximum_node_count_is_decided(slurm: SlurmWorld) -> None:
    job = job_id(slurm.cluster.sbatch("acme-eu", f"{H100}:4", extra=["--hold"]))
    raised = slurm.cluster.run("scontrol", "update", f"JobId={job}", "NumNodes=1-4", check=False)
    assert raised.returncode != 0, "raising the maximum node count to 4 (16 GPUs) was not decided"
    assert slurm.cluster.job(job)["NumNodes"].split("-")[-1] in ("1", "1-1")

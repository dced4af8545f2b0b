"""Which trace tasks go through Kueue as Jobs, the Job each becomes, and Kueue's verdict read
off a Workload (pure)."""

from __future__ import annotations

from pathlib import Path

from bench.fleet.jobs import job_object, job_of_pod, queued, workload_job, workload_waiting
from bench.fleet.mapping import SHARED_GPU, load_mapping, plan
from bench.fleet.trace import read_nodes, read_tasks
from pdp.substrate.labels import LOCAL_QUEUE, QUEUE_LABEL

SLICE = Path(__file__).resolve().parents[3] / "bench" / "fleet" / "slice"


def test_spot_tasks_without_a_gpu_share_become_jobs_in_the_tenants_local_queue() -> None:
    arrivals = plan(
        read_nodes(SLICE / "nodes-every-3rd.csv"), read_tasks(SLICE / "tasks-every-8th.csv"), load_mapping()
    ).arrivals
    jobs = [a for a in arrivals if queued(a)]
    assert jobs and all(a.tenant.tier == "spot" for a in jobs)
    # A share of a GPU is a resource no ClusterQueue covers: those stay pods.
    shares = [a for a in arrivals if a.tenant.tier == "spot" and not queued(a)]
    assert shares and all(SHARED_GPU in a.pod["spec"]["containers"][0]["resources"]["limits"] for a in shares)
    job = job_object(jobs[0].pod)
    assert job["metadata"]["labels"][QUEUE_LABEL] == LOCAL_QUEUE
    assert job["metadata"]["name"] == jobs[0].pod["metadata"]["name"]
    assert job["spec"]["template"]["spec"] == jobs[0].pod["spec"]
    assert job["spec"]["podFailurePolicy"]["rules"][0]["action"] == "Ignore"


def test_a_workload_waits_while_kueue_finds_no_quota() -> None:
    owner = {"kind": "Job", "name": "openb-pod-1"}
    workload = {"metadata": {"namespace": "iris-jobs", "ownerReferences": [owner]}}
    assert workload_job(workload) == "iris-jobs/openb-pod-1"
    assert workload_waiting(workload) == ""  # not tried yet
    no_quota = {
        "type": "QuotaReserved",
        "status": "False",
        "reason": "Pending",
        "message": "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu",
    }
    assert workload_waiting({"status": {"conditions": [no_quota]}}) == "Kueue: no quota left"
    admitted = {**no_quota, "status": "True"}
    assert workload_waiting({"status": {"conditions": [admitted]}}) == ""
    pod = {"metadata": {"namespace": "iris-jobs", "labels": {"batch.kubernetes.io/job-name": "openb-pod-1"}}}
    assert job_of_pod(pod) == "iris-jobs/openb-pod-1"
    assert job_of_pod({"metadata": {"namespace": "iris-jobs"}}) == ""

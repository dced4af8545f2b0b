"""Kueue for real: tenant quotas realized as ClusterQueues and the PDP as Kueue's admission check,
against the real Kueue v0.17.0, kube-apiserver, kube-scheduler (with the PDP's extender) and
kube-controller-manager's job controller (tests/e2e/kueue_world.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from prometheus_client.parser import text_string_to_metric_families

from pdp.product.console.pages.usage.charts import kueue_pending_promql
from pdp.records.log import DecisionLog
from pdp.substrate.kubernetes.adapter import FIELD_MANAGER
from pdp.substrate.kueue import objects as kueue_objects
from pdp.substrate.kueue.checks import DECISION_CONDITION, DECISION_LABEL, REVISION_LABEL
from pdp.substrate.kueue.objects import CHECK_NAME, cluster_queue_name
from pdp.substrate.kueue.version import GROUP, VERSION
from tests.artifacts import cached_artifact
from tests.e2e.controlplane import free_port
from tests.e2e.kueue_world import World, dead_engine_server, gpu_job, kueue_world, wait_for
from tests.lifecycle.harness import Worker, onboard, tenant_doc
from tests.telemetry.conftest import running_telemetry

ACME_NODES = {"eu-acme-1", "eu-acme-2"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]) -> Iterator[World]:
    with kueue_world(tmp_path_factory.mktemp("kueue-e2e"), pki) as w:
        yield w


def entry(wl: dict[str, Any]) -> dict[str, Any]:
    checks = (wl.get("status") or {}).get("admissionChecks") or ()
    return next((c for c in checks if c["name"] == CHECK_NAME), {})


def condition(wl: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (wl.get("status") or {}).get("conditions") or () if c["type"] == kind), {})


class Jobs:
    """Jobs a test creates, deleted (with their pods) when it ends, and their tenant's queue
    drained before the next test starts."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.batch = client.BatchV1Api(world.api)
        self.core = client.CoreV1Api(world.api)
        self.created: list[Any] = []

    def create(self, namespace: str, body: dict[str, Any]) -> Any:
        job = self.batch.create_namespaced_job(namespace, body)
        self.created.append(job)
        return job

    def workload(self, job: Any, what: str, done: Any) -> dict[str, Any]:
        """The Workload of `job` once `done(workload)` holds."""

        def probe() -> dict[str, Any] | None:
            wl = self.world.workload_of(job)
            return wl if wl is not None and done(wl) else None

        return wait_for(f"{what} ({job.metadata.name})", probe, logs=self.world.logs)

    def read(self, job: Any) -> Any:
        return self.batch.read_namespaced_job(job.metadata.name, job.metadata.namespace)

    def pods(self, job: Any) -> list[Any]:
        selector = f"batch.kubernetes.io/job-name={job.metadata.name}"
        return list(self.core.list_namespaced_pod(job.metadata.namespace, label_selector=selector).items)

    def bound(self, job: Any, n: int) -> list[Any]:
        def probe() -> list[Any] | None:
            pods = [p for p in self.pods(job) if p.spec.node_name and not p.metadata.deletion_timestamp]
            return pods if len(pods) == n else None

        return wait_for(f"{n} pods of {job.metadata.name} bound", probe, logs=self.world.logs)

    def cleanup(self) -> None:
        for job in self.created:
            try:
                self.batch.delete_namespaced_job(
                    job.metadata.name, job.metadata.namespace, propagation_policy="Background"
                )
            except client.exceptions.ApiException as exc:
                if exc.status != 404:
                    raise
        for tenant in {self.world.namespace_tenant(j.metadata.namespace) for j in self.created}:
            wait_for(
                f"the queue of {tenant} drained",
                lambda t=tenant: _idle(self.world.cluster_queue(t)),  # type: ignore[misc]
                logs=self.world.logs,
            )


def _idle(cq: dict[str, Any]) -> bool:
    status = cq.get("status") or {}
    return not status.get("reservingWorkloads") and not status.get("admittedWorkloads")


@pytest.fixture()
def jobs(world: World) -> Iterator[Jobs]:
    if world.controller is None or world.controller.name != "kueue-controller":
        world.run_controller()
    made = Jobs(world)
    try:
        yield made
    finally:
        made.cleanup()


def _admitted(wl: dict[str, Any]) -> bool:
    return condition(wl, "Admitted").get("status") == "True"


def test_an_acme_job_runs_only_after_the_pdp_check_on_its_eu_dedicated_nodes(
    world: World, jobs: Jobs
) -> None:
    job = jobs.create("acme-prod", gpu_job("train-eu", 2))
    assert job.spec.suspend is True  # Kueue's webhook: nothing runs before admission
    wl = jobs.workload(job, "admitted", _admitted)
    check = entry(wl)
    assert check["state"] == "Ready", check
    # Kueue admitted it once the PDP's check was Ready, not before.
    assert condition(wl, "Admitted")["lastTransitionTime"] >= check["lastTransitionTime"]
    [update] = check["podSetUpdates"]
    # The flavor brings the GPU product, the dedicated-tenant label and the toleration; the PDP
    # adds what the flavor cannot know: the region residency allows and the tenant's pool.
    assert update["nodeSelector"] == {
        "gpupaas.io/pool": "acme-h100-dedicated",
        "topology.kubernetes.io/region": "eu-west-1",
    }
    decision_id = update["labels"][DECISION_LABEL]
    assert update["labels"][REVISION_LABEL] == world.stack.bundle.revision  # type: ignore[union-attr]

    pods = jobs.bound(job, 2)
    assert {p.spec.node_name for p in pods} <= ACME_NODES
    for pod in pods:
        assert pod.spec.node_selector == {
            "gpupaas.io/dedicated-tenant": "acme-eu",
            "gpupaas.io/pool": "acme-h100-dedicated",
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
            "topology.kubernetes.io/region": "eu-west-1",
        }
        tolerations = [(t.key, t.operator, t.value, t.effect) for t in pod.spec.tolerations or ()]
        assert ("gpupaas.io/dedicated", "Equal", "acme-eu", "NoSchedule") in tolerations
        assert pod.metadata.labels[DECISION_LABEL] == decision_id
    # The decision is recorded like every other, with its tenant and outcome.
    records = {r.decision_id: r for r in world.decisions(tenant="acme-eu")}
    assert records[decision_id].outcome == "ALLOW" and records[decision_id].kind == "admit_workload"

    # Restart-safe and idempotent: a restarted controller, once it has decided a new Workload
    # (so it has listed everything), left the decided one as it was: no second decision, no write.
    world.run_controller()
    other = jobs.create("acme-prod", gpu_job("train-eu-2", 1))
    jobs.workload(other, "admitted", _admitted)
    again = world.workload_of(job) or {}
    assert entry(again) == check
    ours = [m for m in again["metadata"]["managedFields"] if m["manager"] == "gpupaas-pdp-admission-check"]
    before = [m for m in wl["metadata"]["managedFields"] if m["manager"] == "gpupaas-pdp-admission-check"]
    assert [m["time"] for m in ours] == [m["time"] for m in before]


class RetryMessages:
    """The messages of every Retry our check wrote on the namespace's Workloads, from a watch: Kueue
    turns a Retry back to Pending (counting it in retryCount) at once, so a poll can miss it."""

    def __init__(self, world: World, namespace: str) -> None:
        self.world = world
        self.namespace = namespace
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retry-messages", daemon=True)

    def __enter__(self) -> RetryMessages:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def wait(self, *words: str) -> str:
        """The first message of a Retry holding every word (the watch may trail a poll a little)."""
        return wait_for(
            f"a Retry saying {words}",
            lambda: next((m for m in self.seen if all(w in m for w in words)), None),
            timeout=20,
            logs=lambda: f"Retry messages seen: {self.seen}",
        )

    def _run(self) -> None:
        version = ""
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                self.world.custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                "workloads",
                resource_version=version,
                timeout_seconds=2,
            )
            for event in stream:
                wl = event["object"]
                version = wl["metadata"]["resourceVersion"]
                check = entry(wl)
                if check.get("state") == "Retry":
                    self.seen.append(check["message"])


def test_an_unreachable_pdp_or_engine_fails_closed_and_a_restarted_controller_admits(
    world: World, jobs: Jobs
) -> None:
    def retried(times: int) -> Any:
        return lambda wl: int(entry(wl).get("retryCount") or 0) >= times

    with RetryMessages(world, "acme-prod") as retries:
        # Nothing listens where the controller looks for the PDP.
        world.run_controller("kueue-controller-no-pdp", f"127.0.0.1:{free_port()}")
        job = jobs.create("acme-prod", gpu_job("train-retry", 1))
        jobs.workload(job, "a retry without a PDP", retried(1))
        retries.wait("could not decide", "PDP at gRPC")
        # A PDP whose policy engine cannot be reached answers DENY with an engine reason: Retry too.
        dead = dead_engine_server()
        try:
            world.run_controller("kueue-controller-dead-engine", dead.address)
            jobs.workload(job, "retries with the engine down", retried(3))
            retries.wait("[ENGINE_", "failing closed")
            # Never Ready meanwhile: the job stays suspended, no pod exists.
            assert jobs.read(job).spec.suspend is True and jobs.pods(job) == []
        finally:
            dead.stop()
    # A controller started afresh picks the workload up where it stands; this one asks the PDP's
    # OPA directly, as deploy/kueue runs it, and records the decision in its own log.
    assert world.stack.sidecar is not None
    controller = world.run_controller("kueue-controller-opa", opa_addr=world.stack.sidecar.addr)
    wl = jobs.workload(job, "admitted after the restart", _admitted)
    assert entry(wl)["state"] == "Ready"
    [pod] = jobs.bound(job, 1)
    assert pod.spec.node_name in ACME_NODES
    log = DecisionLog(controller.state / "decisions.sqlite")
    try:
        recorded = {r.decision_id: r for r in log.query(tenant="acme-eu")}
    finally:
        log.close()
    assert recorded[pod.metadata.labels[DECISION_LABEL]].outcome == "ALLOW", recorded


def test_a_job_asking_for_a_us_region_is_rejected_with_residency_violation(world: World, jobs: Jobs) -> None:
    # The PDP's admission webhook lets the suspended Job in; Kueue reserves quota, the check rejects.
    body = gpu_job("train-us", 1, node_selector={"topology.kubernetes.io/region": "us-east-1"})
    job = jobs.create("acme-prod", body)
    wl = jobs.workload(
        job, "rejected and deactivated", lambda w: (w.get("spec") or {}).get("active") is False
    )
    # Kueue deactivated it for the rejected check (and reset the entry); the PDP's condition
    # keeps the reasons on the Workload.
    decided = condition(wl, DECISION_CONDITION)
    assert decided["status"] == "False" and decided["reason"] == "Denied", decided
    assert "[RESIDENCY_VIOLATION]" in decided["message"] and "tenant acme-eu" in decided["message"]
    assert "us-east-1" in decided["message"]
    assert entry(wl)["state"] == "Rejected" or entry(wl)["message"].endswith("Previously: Rejected")
    assert not _admitted(wl)
    assert jobs.read(job).spec.suspend is True and jobs.pods(job) == []
    denied = [r for r in world.decisions(tenant="acme-eu") if r.outcome == "DENY"]
    assert any(r.reasons[0]["code"] == "RESIDENCY_VIOLATION" for r in denied)


def test_quota_exhaustion_keeps_a_job_pending_with_kueues_own_reason(
    world: World, jobs: Jobs, tmp_path: Path
) -> None:
    fill = jobs.create("acme-prod", gpu_job("fill", 3))
    jobs.workload(fill, "admitted", _admitted)
    jobs.bound(fill, 3)  # its pods decided by the webhook and the extender, before counting
    decided = len(world.decisions(tenant="acme-eu"))
    over = jobs.create("acme-prod", gpu_job("one-too-many", 2))  # 3 + 2 > acme's 4 H100s

    def pending(wl: dict[str, Any]) -> bool:
        reserved = condition(wl, "QuotaReserved")
        return reserved.get("status") == "False" and "insufficient unused quota" in reserved.get(
            "message", ""
        )

    wl = jobs.workload(over, "pending for quota", pending)
    reserved = condition(wl, "QuotaReserved")
    assert reserved["reason"] == "Pending" and "nvidia.com/gpu" in reserved["message"], reserved
    # What the console's usage page charts: Kueue's own count of the tenant's ClusterQueue, read
    # directly and through a real Prometheus scraping Kueue as a cluster's would (TLS, a service
    # account's token), with the page's query (kueue_pending_promql).
    queue = cluster_queue_name("acme-eu")

    def pending_in_kueue() -> dict[str, float] | None:
        counts = {
            s.labels["status"]: s.value
            for family in text_string_to_metric_families(world.kueue.metrics(world.api))
            for s in family.samples
            if s.name == "kueue_pending_workloads" and s.labels.get("cluster_queue") == queue
        }
        return counts if sum(counts.values()) == 1 else None  # {"active": 0, "inadmissible": 1}

    counted = wait_for("Kueue counting the pending workload", pending_in_kueue, logs=world.logs)
    assert set(counted) <= {"active", "inadmissible"}, counted
    token_file = tmp_path / "kueue-metrics-token"
    token_file.touch(mode=0o600)
    token_file.write_text(world.kueue.metrics_token(world.api))
    assert world.kueue.ca is not None
    scrape = {
        "job_name": "kueue",
        "scheme": "https",
        "tls_config": {"ca_file": str(world.kueue.ca.cert)},
        "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
        "static_configs": [{"targets": [world.kueue.metrics_address]}],
    }
    (tmp_path / "prometheus").mkdir()
    with running_telemetry(
        tmp_path / "prometheus", cached_artifact("build-prometheus"), scrape_configs=[scrape]
    ) as t:

        def charted() -> list[tuple[dict[str, str], float]] | None:
            found = [(s.labels, s.value) for s in t.client.query(kueue_pending_promql(["acme-eu"]))]
            return found or None

        found = wait_for("Prometheus answering the usage page's Kueue query", charted, logs=world.logs)
    # One line per status (Kueue reports both, 0 or not), the same figures as Kueue's own.
    assert {labels["tenant"] for labels, _ in found} == {"acme-eu"}, found
    assert {labels["status"]: value for labels, value in found} == counted, (found, counted)
    # Kueue's own decision: the PDP was not asked, nothing runs.
    assert entry(wl).get("state", "Pending") == "Pending"
    assert jobs.read(over).spec.suspend is True and jobs.pods(over) == []
    assert len(world.decisions(tenant="acme-eu")) == decided


def test_spot_borrows_idle_quota_and_is_reclaimed_when_the_entitled_tenant_needs_it(
    world: World, jobs: Jobs
) -> None:
    spot = [
        jobs.create("umbrella-batch", gpu_job(f"spot-{x}", 2, priority_class="gpupaas-spot")) for x in "ab"
    ]
    for job in spot:
        jobs.workload(job, "admitted", _admitted)
        jobs.bound(job, 2)

    def borrowed() -> str:
        status = world.cluster_queue("umbrella-spot").get("status") or {}
        usage = {f["name"]: r for f in status.get("flavorsReservation") or () for r in f["resources"]}
        return str(usage.get("gpupaas-h100-80gb-shared", {}).get("borrowed", "0"))

    # 4 H100s against a nominal quota of 2: 2 borrowed from the standard tier's idle quota.
    wait_for("the spot queue borrowing 2 H100s", lambda: borrowed() == "2", logs=borrowed)

    globex = jobs.create("globex-ml", gpu_job("train-globex", 8, priority_class="gpupaas-standard"))
    jobs.workload(globex, "admitted", _admitted)
    assert len(jobs.bound(globex, 8)) == 8
    states = {job.metadata.name: world.workload_of(job) for job in spot}
    preempted = [n for n, wl in states.items() if wl and condition(wl, "Preempted").get("status") == "True"]
    assert len(preempted) == 1, {n: (w or {}).get("status") for n, w in states.items()}
    [victim] = [j for j in spot if j.metadata.name == preempted[0]]
    reason = condition(states[preempted[0]] or {}, "Preempted")
    assert reason["reason"] == "InCohortReclamation", reason
    wait_for(
        "the reclaimed spot job suspended, its pods gone",
        lambda: jobs.read(victim).spec.suspend is True and jobs.pods(victim) == [],
        logs=world.logs,
    )
    [kept] = [j for j in spot if j is not victim]
    assert _admitted(world.workload_of(kept) or {})  # within its own quota: never reclaimed


def _spec_version(obj: dict[str, Any] | None) -> tuple[Any, ...]:
    """What a no-op apply leaves alone: generation and the lifecycle manager's fields and time."""
    assert obj is not None
    mine = [
        (m["time"], m["fieldsV1"]) for m in obj["metadata"]["managedFields"] if m["manager"] == FIELD_MANAGER
    ]
    return obj["metadata"].get("generation"), mine


def _through_approval(worker: Worker, tenant: str, response: Any) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    if response.json()["outcome"] == "NEEDS_APPROVAL":
        worker.approve(worker.wait_approval(tenant)["id"])
    wf = worker.wait_workflow(response.json()["workflow_id"], timeout=300)
    assert wf["status"] == "SUCCESS", wf
    return wf["output"]  # type: ignore[no-any-return]


def test_quota_and_sla_changes_update_and_offboarding_removes_the_tenants_queues(
    world: World, tmp_path: Path
) -> None:
    worker = Worker(tmp_path, kubeconfig=world.cp.kubeconfig).start()
    custom = world.custom
    queue = cluster_queue_name("globex-kq")
    try:
        token = onboard(worker, tenant_doc("globex", "globex-kq", ["globexkq-ml"]))
        # Kueue took the lifecycle's objects: the queue is active (flavors and check found).
        wait_for(
            "the onboarded tenant's ClusterQueue active",
            lambda: any(
                c["type"] == "Active" and c["status"] == "True"
                for c in (world.cluster_queue("globex-kq").get("status") or {}).get("conditions") or ()
            ),
            logs=world.logs,
        )
        assert custom.get_namespaced_custom_object(GROUP, VERSION, "globexkq-ml", "localqueues", "default")

        def quotas() -> dict[str, Any]:
            spec = world.cluster_queue("globex-kq")["spec"]
            return {
                f["name"]: f["resources"][0]["nominalQuota"] for f in spec["resourceGroups"][0]["flavors"]
            }

        assert quotas() == {"gpupaas-h100-80gb-shared": "8", "gpupaas-a100-40gb-shared": "4"}
        # Applying the same objects again changes nothing, with Kueue's defaulting webhook in place.
        policy = tenant_doc("globex", "globex-kq", ["globexkq-ml"])["tenant"]
        applied = [world.adapter.get(o) for o in kueue_objects.tenant_objects(policy, world.fleet)]
        for obj in kueue_objects.tenant_objects(policy, world.fleet):
            world.adapter.apply(obj)
        again = [world.adapter.get(o) for o in kueue_objects.tenant_objects(policy, world.fleet)]
        assert [_spec_version(o) for o in again] == [_spec_version(o) for o in applied]
        with worker.client(token) as c:
            entitlements = {"H100-80GB": 10, "A100-40GB": 4}
            r = c.post("/v1/tenants/globex-kq/quotas", json={"entitlements": entitlements})
        assert _through_approval(worker, "globex-kq", r)["status"] == "applied"
        assert quotas() == {"gpupaas-h100-80gb-shared": "10", "gpupaas-a100-40gb-shared": "4"}
        with worker.client(token) as c:
            r = c.post("/v1/tenants/globex-kq/sla", json={"tier": "enterprise"})
        assert _through_approval(worker, "globex-kq", r)["status"] == "applied"
        assert world.cluster_queue("globex-kq")["spec"]["cohortName"] == "gpupaas-enterprise"

        # A Job with a CPU sidecar in a namespace the lifecycle made (LimitRange included): Kueue
        # counts the one GPU asked for, not a LimitRange default. The PDP serving this cluster's
        # checks has no tenant globex-kq (the worker publishes to its own), so the check rejects.
        body = gpu_job("with-sidecar", 1)
        body["spec"]["template"]["spec"]["containers"].append(
            {"name": "sidecar", "image": "registry.example/log:1"}
        )
        # The controller stopped meanwhile, so the Workload holds its quota while its check waits.
        assert world.controller is not None
        world.controller.stop()
        job = client.BatchV1Api(world.api).create_namespaced_job("globexkq-ml", body)

        def reserved() -> dict[str, Any] | None:
            wl = world.workload_of(job)
            return wl if wl and (wl.get("status") or {}).get("admission") else None

        wl = wait_for("the sidecar job holding quota", reserved, logs=world.logs)
        [assignment] = wl["status"]["admission"]["podSetAssignments"]
        assert assignment["resourceUsage"] == {"nvidia.com/gpu": "1"}, assignment
        world.run_controller()

        def rejected() -> dict[str, Any] | None:
            wl = world.workload_of(job)
            return wl if wl and condition(wl, DECISION_CONDITION).get("reason") == "Denied" else None

        wl = wait_for("the sidecar job decided", rejected, logs=world.logs)
        assert "[TENANT_UNKNOWN]" in condition(wl, DECISION_CONDITION)["message"]

        with worker.client(token) as c:
            r = c.post("/v1/tenants/globex-kq/offboard", json={"reason": "contract ended"})
        assert _through_approval(worker, "globex-kq", r)["status"] == "offboarded"
    finally:
        worker.stop()
    for read in (
        lambda: custom.get_cluster_custom_object(GROUP, VERSION, "clusterqueues", queue),
        lambda: custom.get_namespaced_custom_object(GROUP, VERSION, "globexkq-ml", "localqueues", "default"),
    ):
        with pytest.raises(client.exceptions.ApiException) as gone:
            read()
        assert gone.value.status == 404

"""Approving DEDICATED_POOL_PROVISIONING provisions a pool, end to end on a real worker (real OPA,
DBOS) with the dry-run adapter: nodes of the fleet's shared capacity carved, the bundle's fleet
updated, deployments placed there; no capacity: the tenant waits `provisioning` with a reason
until a capacity retry finds some; a failure gives the nodes back; a pool the operator declared
before the tenant was onboarded is its own, no approval asked. (Against a real kube-apiserver,
with preemption of what runs on the nodes: test_pools_kubernetes.py.)"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from pdp.lifecycle.storage.db import Database
from pdp.lifecycle.storage.effects import EffectLog
from pdp.lifecycle.storage.pools import PoolRecords
from pdp.substrate.dryrun import DryRunAdapter
from tests.lifecycle.harness import EXAMPLES, Worker, audit_records, h100_deployment, onboard, tenant_doc

POOL = "acme-eu5-h100-80gb"
NODE = "eu-shared-1"  # the first of the pool's node_names in examples/fleet.yaml


def _fleet(worker: Worker) -> dict[str, Any]:
    """The fleet the worker's bundle carries."""
    return yaml.safe_load((worker.root / "state" / "lifecycle" / "fleet.yaml").read_text())["fleet"]  # type: ignore[no-any-return]


def _node_effects(worker: Worker) -> list[dict[str, Any]]:
    db = Database(worker.database())
    try:
        return [e for e in DryRunAdapter(EffectLog(db)).effects(bodies=True) if e["kind"] == "Node"]
    finally:
        db.close()


def _events(worker: Worker, tenant: str) -> list[dict[str, Any]]:
    with worker.client() as c:
        return audit_records(c.get("/v1/audit", params={"tenant": tenant}).text)


def test_approved_pool_is_carved_from_shared_nodes_used_by_deploys_and_released_by_offboarding(
    tmp_path: Path,
) -> None:
    worker = Worker(tmp_path).start()
    try:
        onboard(worker, tenant_doc("acme-eu", "acme-eu5", ["acme5-prod"]), approve=True)
        with worker.client() as c:
            tenant = c.get("/v1/tenants/acme-eu5").json()
        assert tenant["state"] == "active"
        # 4 H100s in eu-only: one 8-GPU node of the EU shared H100 pool.
        assert tenant["carved_pools"] == [
            {"pool": POOL, "cluster": "eu-west", "region": "eu-west-1", "gpu_class": "H100-80GB",
             "source_pool": "eu-h100-shared", "nodes": [NODE]}
        ]  # fmt: skip
        pools = _fleet(worker)["clusters"]["eu-west"]["pools"]
        assert pools["eu-h100-shared"]["nodes"] == 3
        assert pools["eu-h100-shared"]["node_names"] == ["eu-shared-2", "eu-shared-3", "eu-shared-4"]
        assert pools[POOL] == {"gpu_class": "H100-80GB", "isolation": "dedicated", "tenant": "acme-eu5",
                               "sharing_strategy": "none", "nodes": 1, "gpus_per_node": 8,
                               "node_names": [NODE]}  # fmt: skip
        [carved] = _node_effects(worker)
        assert carved["op"] == "would_apply" and carved["mode"] == "dry-run"
        assert carved["body"]["metadata"]["labels"] == {
            "gpupaas.io/pool": POOL,
            "gpupaas.io/dedicated-tenant": "acme-eu5",
        }
        assert carved["body"]["spec"]["taints"] == [
            {"key": "gpupaas.io/dedicated", "value": "acme-eu5", "effect": "NoSchedule"}
        ]
        [record] = [r for r in _events(worker, "acme-eu5") if r["event"] == "pool.carved"]
        assert record["detail"]["nodes"] == [NODE] and record["detail"]["mode"] == "dry-run"
        assert record["workflow_id"] == "onboard-acme-eu5" and record["decision_id"]

        # The PDP now places the tenant's deployments in its pool (before: NO_ELIGIBLE_CLUSTER).
        with worker.client() as c:
            r = c.post("/v1/tenants/acme-eu5/deployments", json=h100_deployment("llm", 2))
            assert r.status_code == 202 and r.json()["outcome"] == "ALLOW", r.text
            assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"
            [dep] = c.get("/v1/tenants/acme-eu5/deployments").json()
        assert dep["state"] == "running"
        db = Database(worker.database())
        try:
            [deployment] = [
                e["body"]
                for e in DryRunAdapter(EffectLog(db)).effects(bodies=True)
                if e["kind"] == "Deployment"
            ]
        finally:
            db.close()
        pod = deployment["spec"]["template"]["spec"]
        [term] = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ]
        assert {"key": "gpupaas.io/pool", "operator": "In", "values": [POOL]} in term["matchExpressions"]
        assert pod["tolerations"] == [
            {"key": "gpupaas.io/dedicated", "operator": "Equal", "value": "acme-eu5", "effect": "NoSchedule"}
        ]

        with worker.client() as c:
            r = c.post("/v1/tenants/acme-eu5/offboard", json={"reason": "test"})
            assert r.status_code == 202, r.text
        worker.approve(worker.wait_approval("acme-eu5")["id"])
        assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "offboarded"
        # The node went back to the shared pool, as it was.
        pools = _fleet(worker)["clusters"]["eu-west"]["pools"]
        assert pools["eu-h100-shared"]["nodes"] == 4 and POOL not in pools
        restored = _node_effects(worker)[-1]["body"]
        shared = {"gpupaas.io/pool": "eu-h100-shared"}
        assert restored == {"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": shared}}
        assert "pool.released" in [r["event"] for r in _events(worker, "acme-eu5")]
    finally:
        worker.stop()


def _wait_for(get: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_pool_the_operator_declared_before_onboarding_is_the_tenants_without_approval(
    tmp_path: Path,
) -> None:
    """The operator racked and declared acme-eu's pool (examples/fleet.yaml's acme-h100-dedicated)
    before acme-eu signed, then onboards it through the API: its onboarding finds the pool waiting
    (no approval to carve another) and, the EU shared H100 pool gone, offers H100s through it alone
    (no ENTITLEMENT_UNSATISFIABLE); published, the bundle holds the pool among eu-west's."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    (tmp_path / "examples" / "tenants" / "acme-eu.yaml").unlink()
    fleet_file = tmp_path / "examples" / "fleet.yaml"
    document = yaml.safe_load(fleet_file.read_text())
    del document["fleet"]["clusters"]["eu-west"]["pools"]["eu-h100-shared"]
    fleet_file.write_text(yaml.safe_dump(document))
    declared = document["fleet"]["clusters"]["eu-west"]["pools"]["acme-h100-dedicated"]
    acme = yaml.safe_load((EXAMPLES / "tenants" / "acme-eu.yaml").read_text())
    worker = Worker(tmp_path).start()
    try:
        # Set aside while acme-eu is unknown: no placement or admission reads it.
        fleet = _fleet(worker)
        assert fleet["awaiting"] == {"eu-west": {"acme-h100-dedicated": declared}}
        assert "acme-h100-dedicated" not in fleet["clusters"]["eu-west"]["pools"]
        with worker.client() as c:
            r = c.post("/v1/tenants", json=acme)
            assert r.status_code == 202, r.text
            assert (r.json()["outcome"], r.json()["reason_codes"]) == ("ALLOW", []), r.text
        wf = worker.wait_workflow(r.json()["workflow_id"])
        assert wf["status"] == "SUCCESS" and wf["output"]["status"] == "active", wf
        assert wf["output"]["decision"]["constraints"]["eligible_clusters"] == ["eu-west"]
        with worker.client() as c:
            tenant = c.get("/v1/tenants/acme-eu").json()
            assert c.get("/v1/approvals", params={"all": "true"}).json() == []
        assert tenant["state"] == "active" and "carved_pools" not in tenant and "provisioning" not in tenant
        assert _node_effects(worker) == []  # no node carved
        fleet = _fleet(worker)
        assert fleet["clusters"]["eu-west"]["pools"]["acme-h100-dedicated"] == declared
        assert "awaiting" not in fleet
        # Its deployments are placed in that pool.
        with worker.client() as c:
            r = c.post("/v1/tenants/acme-eu/deployments", json=h100_deployment("llm", 2))
            assert r.status_code == 202 and r.json()["outcome"] == "ALLOW", r.text
            assert worker.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"
    finally:
        worker.stop()


def test_without_capacity_the_tenant_waits_with_a_reason_until_a_capacity_retry_finds_some(
    tmp_path: Path,
) -> None:
    worker = Worker(tmp_path)
    fleet_file = worker.examples / "fleet.yaml"
    doc = yaml.safe_load(fleet_file.read_text())
    doc["fleet"]["clusters"]["eu-west"]["pools"]["eu-h100-shared"]["nodes"] = 0
    doc["fleet"]["clusters"]["eu-west"]["pools"]["eu-h100-shared"]["node_names"] = []
    fleet_file.write_text(yaml.safe_dump(doc))
    worker.start()
    try:
        with worker.client() as c:
            r = c.post("/v1/tenants", json=tenant_doc("acme-eu", "acme-eu6", ["acme6-prod"]))
            assert r.status_code == 202 and r.json()["reason_codes"] == ["DEDICATED_POOL_PROVISIONING"]
        worker.approve(worker.wait_approval("acme-eu6")["id"])

        def waiting() -> dict[str, Any] | None:
            with worker.client() as c:
                t: dict[str, Any] = c.get("/v1/tenants/acme-eu6").json()
            return t if t.get("provisioning", {}).get("status") == "waiting_for_capacity" else None

        tenant = _wait_for(waiting, "the pool request to wait for capacity")
        assert tenant["state"] == "provisioning"
        reason = tenant["provisioning"]["reason"]
        assert reason == (
            "no capacity for a dedicated H100-80GB pool of 4 GPU(s) for tenant 'acme-eu6': "
            "pool 'eu-h100-shared' of cluster 'eu-west' has 0 free node(s) of the 1 needed"
        )
        [record] = [r for r in _events(worker, "acme-eu6") if r["event"] == "pool.waiting"]
        assert record["detail"]["reason"] == reason

        # The operator adds a node to the shared pool, then asks for a capacity retry.
        doc["fleet"]["clusters"]["eu-west"]["pools"]["eu-h100-shared"]["nodes"] = 1
        doc["fleet"]["clusters"]["eu-west"]["pools"]["eu-h100-shared"]["node_names"] = [NODE]
        fleet_file.write_text(yaml.safe_dump(doc))
        with worker.client() as c:
            r = c.post("/v1/capacity/retry", json={})
            assert r.status_code == 202 and r.json()["pool_requests_woken"] == ["onboard-acme-eu6"], r.text
        wf = worker.wait_workflow("onboard-acme-eu6")
        assert wf["status"] == "SUCCESS" and wf["output"]["status"] == "active", wf
        with worker.client() as c:
            tenant = c.get("/v1/tenants/acme-eu6").json()
        assert tenant["state"] == "active" and tenant["provisioning"]["status"] == "provisioned"
        assert tenant["carved_pools"][0]["nodes"] == [NODE]
        assert _fleet(worker)["clusters"]["eu-west"]["pools"]["eu-h100-shared"]["nodes"] == 0
    finally:
        worker.stop()


def test_a_failed_carving_gives_the_nodes_back_and_the_tenant_fails(tmp_path: Path) -> None:
    worker = Worker(tmp_path).start(env={"PDP_LIFECYCLE_FAIL_AT": "pool:carve"})
    try:
        with worker.client() as c:
            r = c.post("/v1/tenants", json=tenant_doc("acme-eu", "acme-eu7", ["acme7-prod"]))
            assert r.status_code == 202, r.text
        worker.approve(worker.wait_approval("acme-eu7")["id"])
        wf = worker.wait_workflow("onboard-acme-eu7")
        assert wf["output"]["status"] == "failed" and "carve_step" in wf["output"]["error"], wf
        with worker.client() as c:
            tenant = c.get("/v1/tenants/acme-eu7").json()
        assert tenant["state"] == "failed" and "carved_pools" not in tenant
        assert tenant["provisioning"]["status"] == "released"
        # Withdrawn: its document is out of the bundle's tenant folder, its pool out of the fleet.
        assert not (worker.root / "state" / "lifecycle" / "tenants" / "acme-eu7.yaml").exists()
        pools = _fleet(worker)["clusters"]["eu-west"]["pools"]
        assert pools["eu-h100-shared"]["nodes"] == 4 and "acme-eu7-h100-80gb" not in pools
        # Applied once per attempt of the failing step (server-side apply: the same object), then given back.
        *carved, restored = (e["body"] for e in _node_effects(worker))
        assert len(carved) == 3 and all(c == carved[0] for c in carved)
        assert carved[0]["metadata"]["labels"]["gpupaas.io/dedicated-tenant"] == "acme-eu7"
        assert restored["metadata"]["labels"] == {"gpupaas.io/pool": "eu-h100-shared"}
        events = [r["event"] for r in _events(worker, "acme-eu7")]
        assert events.index("pool.released") < len(events) - 1 and "pool.carved" not in events
        assert events[-1] == "tenant.transition"
    finally:
        worker.stop()


def _carving(pool: str, nodes: list[str]) -> dict[str, Any]:
    where = {"cluster": "eu-west", "region": "eu-west-1", "source_pool": "eu-h100-shared"}
    return {"pool": pool, "tenant": pool.split("-")[0], **where, "gpu_class": "H100-80GB", "nodes": nodes}


def test_a_node_is_claimed_by_one_pool_only_even_under_racing_claims(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'lifecycle.sqlite'}")
    try:
        records = PoolRecords(db)
        assert records.claim([_carving("a-h100", ["n1"])], "wf-a") == []
        assert records.claim([_carving("b-h100", ["n2", "n1"])], "wf-b") == ["n1"]
        assert records.claim([_carving("a-h100", ["n1"])], "wf-a") == []  # a re-run: no-op
        assert [c["pool"] for c in records.active()] == ["a-h100"]
        # Eight carvings race for one node from eight threads: exactly one holds it.
        barrier = threading.Barrier(8)
        results: dict[str, list[str]] = {}

        def claim(i: int) -> None:
            barrier.wait()
            results[f"p{i}-h100"] = records.claim([_carving(f"p{i}-h100", ["n9"])], f"wf-{i}")

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        winners = [pool for pool, taken in results.items() if taken == []]
        assert len(results) == 8 and len(winners) == 1, results
        holders = [c["pool"] for c in records.active() if "n9" in c["nodes"]]
        assert holders == winners
    finally:
        db.close()


def test_two_dedicated_tenants_approved_at_once_for_one_node_get_it_once(tmp_path: Path) -> None:
    worker = Worker(tmp_path)
    fleet_file = worker.examples / "fleet.yaml"
    doc = yaml.safe_load(fleet_file.read_text())
    doc["fleet"]["clusters"]["eu-west"]["pools"]["eu-h100-shared"]["nodes"] = 1
    doc["fleet"]["clusters"]["eu-west"]["pools"]["eu-h100-shared"]["node_names"] = [NODE]
    fleet_file.write_text(yaml.safe_dump(doc))
    worker.start()
    try:
        names = ["race-a", "race-b"]
        with worker.client() as c:
            for name in names:
                assert (
                    c.post("/v1/tenants", json=tenant_doc("acme-eu", name, [f"{name}-prod"])).status_code
                    == 202
                )
        approvals = [worker.wait_approval(name)["id"] for name in names]
        threads = [threading.Thread(target=worker.approve, args=(a,)) for a in approvals]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)

        def settled() -> dict[str, dict[str, Any]] | None:
            with worker.client() as c:
                tenants = {n: c.get(f"/v1/tenants/{n}").json() for n in names}
            states = sorted(t["state"] for t in tenants.values())
            waiting = [
                t
                for t in tenants.values()
                if t.get("provisioning", {}).get("status") == "waiting_for_capacity"
            ]
            return tenants if states == ["active", "provisioning"] and waiting else None

        tenants = _wait_for(settled, "one tenant active, the other waiting")
        [active] = [t for t in tenants.values() if t["state"] == "active"]
        assert active["carved_pools"][0]["nodes"] == [NODE]
        [waiting] = [t for t in tenants.values() if t["state"] == "provisioning"]
        assert "carved_pools" not in waiting and "has 0 free node(s)" in waiting["provisioning"]["reason"]
        pools = _fleet(worker)["clusters"]["eu-west"]["pools"]
        assert pools["eu-h100-shared"]["nodes"] == 0
        assert [p for p, v in pools.items() if v.get("tenant") in names] == [f"{active['name']}-h100-80gb"]
    finally:
        worker.stop()

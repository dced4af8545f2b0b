"""A standard deployment that declares `min_replicas` is scaled toward it, not preempted, when
capacity is short (policies/gpupaas/degradation): on a real worker (real OPA, DBOS on SQLite, the
dry-run adapter), an enterprise deployment the scheduler cannot place takes GPUs from a standard
tenant that allows preemption; the plan scales its deployment down to its minimum (not to zero), and
the deployment keeps running at that size."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.lifecycle.harness import Worker, audit_records, h100_deployment, tenant_doc

ACME = tenant_doc("acme-eu", "acme-min", ["acme-min-prod"], isolation="shared")
GLOBEX = tenant_doc("globex", "globex-min", ["globex-min-ml"], allow_preemption=True)


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = Worker(tmp_path_factory.mktemp("degradation-scale"), capacity_retry_schedule="")
    w.start()
    try:
        for doc in (ACME, GLOBEX):
            with w.client() as c:
                r = c.post("/v1/tenants", json=doc)
                assert r.status_code == 202, r.text
            if r.json()["outcome"] == "NEEDS_APPROVAL":
                w.approve(w.wait_approval(doc["tenant"]["name"])["id"])
            assert w.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "active"
        with w.client() as c:
            r = c.post("/v1/tenants/globex-min/deployments", json=h100_deployment("serve", 4, min_replicas=1))
            assert r.status_code == 202, r.text
        assert w.wait_workflow(r.json()["workflow_id"])["output"]["status"] == "applied"
        yield w
    finally:
        w.stop()


def _deployment(worker: Worker, tenant: str, name: str) -> dict[str, Any]:
    with worker.client() as c:
        [dep] = [d for d in c.get(f"/v1/tenants/{tenant}/deployments").json() if d["name"] == name]
    return dep  # type: ignore[no-any-return]


def test_a_minimum_above_the_replicas_is_refused_naming_the_field(worker: Worker) -> None:
    with worker.client() as c:
        r = c.post("/v1/tenants/globex-min/deployments", json=h100_deployment("bad", 2, min_replicas=3))
    assert r.status_code == 422 and "min_replicas 3 is above replicas 2" in r.text, r.text


def test_the_standard_deployment_is_scaled_to_its_minimum_not_preempted(worker: Worker) -> None:
    assert _deployment(worker, "globex-min", "serve")["spec"]["min_replicas"] == 1
    with worker.client() as c:
        r = c.post(
            "/v1/capacity/exhaustion",
            json={"tenant": "acme-min", "deployment": h100_deployment("llm", 2), "gpus": 2},
        )
        assert r.status_code == 202, r.text
    request = r.json()["workflow_id"]
    wf = worker.wait_workflow(request)
    assert wf["status"] == "SUCCESS", wf
    out = wf["output"]
    assert out["status"] == "placed", out
    serve = _deployment(worker, "globex-min", "serve")
    # The policy scales a standard deployment to its declared minimum (4 -> 1), never to zero.
    assert serve["state"] == "running" and serve["spec"]["replicas"] == 1, serve
    assert _deployment(worker, "acme-min", "llm")["state"] == "running"

    with worker.client() as c:
        trail = audit_records(c.get("/v1/audit").text)
    [degrade] = [
        r
        for r in trail
        if r["workflow_id"] == request and r["event"] == "decision" and r["detail"]["kind"] == "degrade"
    ]
    [row] = degrade["detail"]["payload"]["deployments"]
    assert (row["tenant"], row["deployment"], row["min_replicas"]) == ("globex-min", "serve", 1)

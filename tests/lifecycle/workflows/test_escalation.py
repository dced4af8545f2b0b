from __future__ import annotations

from pathlib import Path

from tests.lifecycle.harness import Worker, tenant_doc


def test_unanswered_approval_escalates_then_expires_as_rejected(tmp_path: Path) -> None:
    worker = Worker(tmp_path, approval_timeout="1").start()
    try:
        with worker.client() as c:
            r = c.post("/v1/tenants", json=tenant_doc("acme-eu", "acme-eu3", ["acme3-prod"]))
            assert r.status_code == 202 and r.json()["reason_codes"] == ["DEDICATED_POOL_PROVISIONING"]
        wf = worker.wait_workflow("onboard-acme-eu3", timeout=30)
        assert wf["output"]["status"] == "rejected"
        with worker.client() as c:
            assert c.get("/v1/tenants/acme-eu3").json()["state"] == "failed"
            assert [a["status"] for a in c.get("/v1/approvals", params={"all": "true"}).json()] == ["expired"]
            events = [line for line in c.get("/v1/audit").text.splitlines() if "approval." in line]
        assert [e.split('"event":"')[1].split('"')[0] for e in events] == [
            "approval.requested",
            "approval.escalated",
            "approval.expired",
        ]
    finally:
        worker.stop()

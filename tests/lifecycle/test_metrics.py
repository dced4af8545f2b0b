"""The lifecycle worker's /metrics on a real worker (real OPA, real DBOS on SQLite): its decisions
under entry point "lifecycle", its workflows by kind and state, and pending approvals with the age
of the oldest, each moving by exactly what the requests started."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.lifecycle.harness import Worker, onboard, tenant_doc
from tests.test_metrics import Samples, delta, parse, series, value

GLOBEX3 = tenant_doc("globex", "globex3", ["globex3-ml"])


def scrape(worker: Worker) -> Samples:
    r = httpx.get(f"{worker.url}/metrics", timeout=30, verify=worker.verify())
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    return parse(r.text)


def logged(worker: Worker) -> int:
    """Decisions in the worker's decision log (every lifecycle decision is recorded)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pdp.cli",
            "records",
            "--state",
            str(worker.root / "state"),
            "--limit",
            "1000000",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return len(out.splitlines())


def lifecycle_decisions(samples: Samples) -> float:
    return sum(
        v
        for labels, v in series(samples, "gpupaas_pdp_decisions_total").items()
        if dict(labels)["entry_point"] == "lifecycle"
    )


def workflows(samples: Samples) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["kind"], dict(labels)["state"]): v
        for labels, v in series(samples, "gpupaas_pdp_lifecycle_workflows").items()
    }


def test_workflows_approvals_and_decisions_are_counted(worker: Worker) -> None:
    logged_before = logged(worker) if (worker.root / "state" / "decisions.sqlite").exists() else 0
    before = scrape(worker)
    token = onboard(worker, GLOBEX3)
    onboarded = scrape(worker)
    grown = {k: v - workflows(before).get(k, 0) for k, v in workflows(onboarded).items()}
    # The worker's own minute schedule (the capacity queue's retry) may start one between the two
    # scrapes; the onboarding starts nothing else.
    grown = {k: v for k, v in grown.items() if v and k[0] != "scheduled_retry_workflow"}
    assert grown == {("onboard_workflow", "SUCCESS"): 1}, grown
    # Each decision the worker made is counted once: as many as its decision log gained (the log's
    # writer thread may lag the answer by a moment).
    decided = lifecycle_decisions(onboarded) - lifecycle_decisions(before)
    assert decided >= 1
    deadline = time.monotonic() + 20
    while logged(worker) - logged_before != decided:
        assert time.monotonic() < deadline, (logged(worker) - logged_before, decided)
        time.sleep(0.2)
    assert value(onboarded, "gpupaas_pdp_lifecycle_pending_approvals") == 0
    assert value(onboarded, "gpupaas_pdp_lifecycle_oldest_pending_approval_age_seconds") == 0

    with worker.client(token) as c:
        r = c.post("/v1/tenants/globex3/quotas", json={"entitlements": {"H100-80GB": 10, "A100-40GB": 4}})
    assert r.status_code == 202 and r.json()["reason_codes"] == ["QUOTA_APPROVAL_REQUIRED"], r.text
    approval = worker.wait_approval("globex3")
    waiting = scrape(worker)
    assert value(waiting, "gpupaas_pdp_lifecycle_pending_approvals") == 1
    assert value(waiting, "gpupaas_pdp_lifecycle_oldest_pending_approval_age_seconds") > 0
    assert delta(waiting, onboarded, "gpupaas_pdp_decision_reasons_total", entry_point="lifecycle",
                 outcome="NEEDS_APPROVAL", reason="QUOTA_APPROVAL_REQUIRED") >= 1  # fmt: skip

    worker.approve(approval["id"])
    assert worker.wait_workflow(approval["id"])["output"]["status"] == "applied"
    done = scrape(worker)
    assert value(done, "gpupaas_pdp_lifecycle_pending_approvals") == 0
    assert value(done, "gpupaas_pdp_lifecycle_oldest_pending_approval_age_seconds") == 0
    # No tenant, namespace or workflow id in any label.
    for name, labels in done:
        if name.startswith("gpupaas_pdp_"):
            assert all("globex3" not in v for _, v in labels), (name, labels)

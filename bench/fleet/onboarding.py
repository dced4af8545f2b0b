"""The trace's tenants onboarded as a platform team would: through the product API (POST
/v1/tenants with the admin token) of the lifecycle worker, `pdp lifecycle worker` with the fleet's
kubeconfig, whose durable onboarding workflows decide each tenant with its embedded PDP and apply
its objects with the real Kubernetes adapter: the tier catalog's priority classes, then the
tenant's namespaces, quotas, limit ranges, priority class, network policies, role bindings and
Kueue queues (pdp/substrate/tenant_objects.py), verified, its policy published.

The enterprise tenants that own a cluster's dedicated pool (the mapping's acme and bolt) too: the
worker starts knowing no tenant, so the lifecycle sets their pools, which the fleet document
holds, aside until each is published (pdp/lifecycle/fleet.py, the fleet's `awaiting`), and their
onboarding finds its pool waiting: no approval to carve another (DEDICATED_POOL_PROVISIONING), the
class only that pool has offered (no ENTITLEMENT_UNSATISFIABLE), as a platform team onboards a
customer whose pool it racked and declared before the customer signed.

The worker is stopped once every onboarding has ended: the replay measures the data path (the
PDP's webhook and extender, Kueue, the scheduler), and a worker left running would spend the
2-core machine's CPU on its own audits during it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.lifecycle.harness import FINAL, Worker


class OnboardingFailed(RuntimeError):
    """An onboarding the API refused, or whose workflow did not end with the tenant active."""


def write_examples(folder: Path, fleet: dict[str, Any], policies: dict[str, dict[str, Any]]) -> Path:
    """A folder as `pdp serve` and the worker read it: fleet.yaml and one document per tenant in
    tenants/ (none given: the worker starts knowing no tenant, and learns each by onboarding)."""
    (folder / "tenants").mkdir(parents=True, exist_ok=True)
    (folder / "fleet.yaml").write_text(yaml.safe_dump({"fleet": fleet}, sort_keys=False))
    for name, policy in policies.items():
        (folder / "tenants" / f"{name}.yaml").write_text(yaml.safe_dump({"tenant": policy}, sort_keys=False))
    return folder


def onboard_all(
    root: Path,
    kubeconfig: Path,
    fleet: dict[str, Any],
    policies: dict[str, dict[str, Any]],
    log: Callable[[str], None] = print,
    timeout: float = 300,
    stop: threading.Event | None = None,
) -> dict[str, dict[str, Any]]:
    """Start the worker against the cluster, onboard every tenant of `policies`, wait for every
    workflow to end; returns tenant -> its workflow's output. Raises OnboardingFailed naming the
    tenant and why if one is refused, asks for approval or does not end active, or when `stop` is
    set (the fleet is being stopped)."""
    examples = write_examples(root / "examples", fleet, {})
    worker = Worker(root, kubeconfig=kubeconfig, examples=examples)
    started = time.monotonic()
    worker.start(timeout=120)
    try:
        workflows: dict[str, str] = {}
        with worker.client() as api:
            # All posted at once: each onboarding is a workflow of its own, run concurrently.
            for name, policy in policies.items():
                r = api.post("/v1/tenants", json={"tenant": policy})
                if r.status_code != 202:
                    raise OnboardingFailed(f"POST /v1/tenants {name}: {r.status_code} {r.text[:500]}")
                body = r.json()
                if body.get("outcome") == "NEEDS_APPROVAL":
                    raise OnboardingFailed(f"onboarding {name} asks for approval: {body}")
                workflows[name] = str(body["workflow_id"])
        stop = stop or threading.Event()
        outputs = {name: _wait(worker, name, wf, started + timeout, stop) for name, wf in workflows.items()}
    finally:
        worker.stop()
    log(f"{len(outputs)} tenants onboarded through the product API in {time.monotonic() - started:.1f} s")
    return outputs


def _wait(
    worker: Worker, tenant: str, workflow_id: str, deadline: float, stop: threading.Event
) -> dict[str, Any]:
    with worker.client() as api:
        while True:
            wf: dict[str, Any] = api.get(f"/v1/workflows/{workflow_id}").json()
            if wf.get("status") in FINAL:
                output = wf.get("output") or {}
                if wf["status"] != "SUCCESS" or output.get("status") != "active":
                    raise OnboardingFailed(f"onboarding {tenant}: {wf}\n{worker.log()}")
                return dict(output)
            if time.monotonic() > deadline or stop.is_set():
                raise OnboardingFailed(f"onboarding {tenant} still {wf.get('status')}:\n{worker.log()}")
            stop.wait(0.2)

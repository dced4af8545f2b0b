"""`pdp waste --reclaim`: start the reclaim workflow for what the waste report finds idle.

A dry run by default: the report's idle deployments are listed as the reclaims that would start.
With `--confirm`, each tenant holding idle GPUs gets one `POST /v1/reclaim` on the lifecycle API
(admin token), over the same window and thresholds: the worker makes the report again over its own
Prometheus and starts one reclaim workflow per idle running deployment (pdp/product/api/reclaim.py;
the policy then decides, per tier, what is taken and after which grace). A worker that refuses or
cannot be reached is exit status 1 with its answer, never a silent "nothing to reclaim".
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pdp.telemetry.waste import WasteReport

DEFAULT_URL = "http://127.0.0.1:8700"


def add_arguments(w: argparse.ArgumentParser) -> None:
    w.add_argument(
        "--reclaim",
        action="store_true",
        help="list the reclaims the idle deployments would start (a dry run unless --confirm)",
    )
    w.add_argument(
        "--confirm", action="store_true", help="with --reclaim: start them through the lifecycle API"
    )
    w.add_argument(
        "--consent",
        action="store_true",
        help="with --reclaim: the tenants consented to go below their entitlement",
    )
    w.add_argument(
        "--url",
        default=os.environ.get("PDP_LIFECYCLE_URL", DEFAULT_URL),
        help=f"the lifecycle worker's API (default: $PDP_LIFECYCLE_URL, else {DEFAULT_URL})",
    )
    w.add_argument("--token", help="an admin token of the worker (default: $PDP_LIFECYCLE_TOKEN)")


def findings(report: WasteReport, tenants: dict[str, Any]) -> list[dict[str, Any]]:
    """The idle deployments of known tenants: tenant, namespace, deployment, idle GPUs now."""
    idle: dict[tuple[str, str, str], int] = {}
    for row in report.rows:
        if row.idle_now and row.tenant in tenants:
            k = (row.tenant, row.namespace, row.deployment)
            idle[k] = idle.get(k, 0) + 1
    return [
        {"tenant": t, "namespace": ns, "deployment": d, "idle_gpus": n}
        for (t, ns, d), n in sorted(idle.items())
    ]


class ReclaimRefused(RuntimeError):
    """The worker refused a reclaim, or could not be reached."""


def start(args: argparse.Namespace, report: WasteReport, found: list[dict[str, Any]]) -> dict[str, Any]:
    """One POST /v1/reclaim per tenant with findings; the workflows started and the skipped."""
    import httpx

    token = args.token or os.environ.get("PDP_LIFECYCLE_TOKEN", "")
    if not token:
        raise ReclaimRefused(
            "no token: give --token or set PDP_LIFECYCLE_TOKEN (an admin token of the worker)"
        )
    t = report.thresholds
    started: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=args.url, headers=headers, timeout=30) as client:
        for tenant in sorted({f["tenant"] for f in found}):
            body = {
                "window": t.window,
                "step": t.step,
                "max_utilization": t.max_utilization,
                "max_memory_mib": t.max_memory_mib,
                "tenant": tenant,
                "consent": bool(args.consent),
            }
            try:
                r = client.post("/v1/reclaim", json=body)
            except httpx.HTTPError as exc:
                raise ReclaimRefused(f"the lifecycle worker at {args.url} cannot be reached: {exc}") from exc
            if r.status_code != 202:
                raise ReclaimRefused(f"POST /v1/reclaim for tenant {tenant}: {r.status_code} {r.text}")
            answer = r.json()
            started += answer.get("started", [])
            skipped += answer.get("skipped", [])
    return {"dry_run": False, "findings": found, "started": started, "skipped": skipped}


def table(outcome: dict[str, Any]) -> str:
    lines = [""]
    if outcome["dry_run"]:
        lines.append("RECLAIM (dry run: add --confirm to start them)")
        lines += [
            f"  would start: {f['tenant']}/{f['deployment']} ({f['idle_gpus']} idle GPUs)"
            for f in outcome["findings"]
        ]
    else:
        lines.append("RECLAIM")
        lines += [
            f"  started: {s['tenant']}/{s['deployment']} ({s['idle_gpus']} idle GPUs) {s['workflow_id']}"
            for s in outcome["started"]
        ]
        lines += [f"  skipped: {s['tenant']}/{s['deployment']}: {s['reason']}" for s in outcome["skipped"]]
    if not outcome["findings"]:
        lines.append("  nothing idle to reclaim")
    return "\n".join(lines) + "\n"

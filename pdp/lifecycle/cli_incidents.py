"""`pdp lifecycle incident ...`: open, list, show and resolve incidents, and the detector that opens
them from DCGM telemetry in Prometheus (`incident detect`)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

Request = Callable[..., int]
ClientOf = Callable[[argparse.Namespace], httpx.Client]


def detect_once(client: httpx.Client, prometheus: str, fatal: set[int] | None, out: Any = sys.stdout) -> int:
    """Open an incident for each node whose GPUs report a fatal XID now; a node whose incident is
    already open is said so (409), not opened twice. Prometheus unreachable is an error, never
    "no faults"."""
    from pdp.telemetry.prometheus import PrometheusClient, PrometheusError
    from pdp.telemetry.xid import node_faults

    try:
        with PrometheusClient(prometheus) as prom:
            faults = node_faults(prom, fatal)
    except PrometheusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for fault in faults:
        r = client.post("/v1/incidents", json=fault.report())
        if r.status_code == 409:
            print(f"{fault.node}: {fault.cause}: an incident is already open", file=out)
            continue
        r.raise_for_status()
        print(f"{fault.node}: {fault.cause}: opened {r.json()['incident']}", file=out)
    if not faults:
        print("no GPU reports a fatal XID", file=out)
    return 0


def add_incident_parsers(
    lsub: Any,
    client: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
    request: Request,
    talks_to_worker: Callable[[Callable[[argparse.Namespace], int]], Callable[[argparse.Namespace], int]],
    client_of: ClientOf,
) -> None:
    inc = lsub.add_parser("incident", help="GPU and node faults: open, list, resolve; the XID detector")
    isub = inc.add_subparsers(dest="incident_command", required=True)
    o = client(isub.add_parser("open", help="start incident response for a faulty node (admin)"))
    o.add_argument("node")
    o.add_argument("--cause", required=True, help="what was seen, e.g. 'node condition Ready=False'")
    o.add_argument("--xid", type=int, action="append", default=[], help="an XID code seen (repeatable)")
    o.set_defaults(
        func=lambda a: request(
            a, "POST", "/v1/incidents", json={"node": a.node, "cause": a.cause, "xids": a.xid}
        )
    )
    ls = client(isub.add_parser("list", help="incidents, newest first (admin)"))
    ls.add_argument("--open", action="store_true", help="only those not resolved yet")
    ls.set_defaults(func=lambda a: request(a, "GET", "/v1/incidents", params={"open_only": a.open}))
    sh = client(isub.add_parser("show", help="one incident: affected deployments, re-placements, SLA impact"))
    sh.add_argument("incident")
    sh.set_defaults(func=lambda a: request(a, "GET", f"/v1/incidents/{a.incident}"))
    rs = client(isub.add_parser("resolve", help="the node is fixed: release it (untaint, uncordon)"))
    rs.add_argument("incident")
    rs.add_argument("--comment", default="")
    rs.set_defaults(
        func=lambda a: request(a, "POST", f"/v1/incidents/{a.incident}/resolve", json={"comment": a.comment})
    )
    d = client(isub.add_parser("detect", help="open incidents for GPUs reporting a fatal XID in Prometheus"))
    d.add_argument("--prometheus", required=True, help="Prometheus's URL, e.g. http://127.0.0.1:9090")
    d.add_argument(
        "--xid",
        type=int,
        action="append",
        default=None,
        help="count this XID as fatal (repeatable; default: the XIDs NVIDIA resolves by a GPU reset)",
    )
    d.add_argument("--every", type=float, default=0.0, help="seconds between checks (default: check once)")

    def detect(a: argparse.Namespace) -> int:
        fatal = set(a.xid) if a.xid else None
        with client_of(a) as c:
            while True:
                code = detect_once(c, a.prometheus, fatal)
                if a.every <= 0 or code != 0:
                    return code
                time.sleep(a.every)

    d.set_defaults(func=talks_to_worker(detect))

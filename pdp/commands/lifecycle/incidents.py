"""`pdp lifecycle incident ...`: open, list, show and resolve incidents, and the detector that opens
them from DCGM telemetry in Prometheus and from Kubernetes node conditions (`incident detect`)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

Request = Callable[..., int]
ClientOf = Callable[[argparse.Namespace], httpx.Client]


def detect_once(
    client: httpx.Client,
    prometheus: str | None,
    fatal: set[int] | None,
    out: Any = sys.stdout,
    *,
    kubeconfig: str | None = None,
    ready_grace: float = 300.0,
    problems: tuple[str, ...] | None = None,
) -> int:
    """Open an incident for each node whose GPUs report a fatal XID now (Prometheus), or whose
    conditions say it is faulty (the Kubernetes API: Ready False/Unknown past `ready_grace`, or a
    problem condition True); a node with both is one incident. A node whose incident is already
    open is said so (409), not opened twice. A source that does not answer is an error, never
    "no faults"."""
    from pdp.substrate.kubernetes import conditions

    xid_faults: list[Any] = []
    node_faults: list[conditions.ConditionFault] = []
    if prometheus:
        from pdp.telemetry.prometheus import PrometheusClient, PrometheusError
        from pdp.telemetry.xid import node_faults as xid_node_faults

        try:
            with PrometheusClient(prometheus) as prom:
                xid_faults = xid_node_faults(prom, fatal)
        except PrometheusError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    if kubeconfig:
        try:
            nodes = conditions.read_nodes(kubeconfig)
        except Exception as exc:  # the client raises ApiException, urllib3 and config errors alike
            print(f"error: reading the nodes of {kubeconfig}: {exc}", file=sys.stderr)
            return 1
        wanted = conditions.GPU_CONDITIONS if problems is None else problems
        node_faults = conditions.condition_faults(nodes, datetime.now(UTC), ready_grace, wanted)
    reports = conditions.merged_reports(xid_faults, node_faults)
    for report in reports:
        r = client.post("/v1/incidents", json=report)
        if r.status_code == 409:
            print(f"{report['node']}: {report['cause']}: an incident is already open", file=out)
            continue
        r.raise_for_status()
        print(f"{report['node']}: {report['cause']}: opened {r.json()['incident']}", file=out)
    if not reports:
        print(
            "no GPU reports a fatal XID" if not kubeconfig else "no fatal XID and no faulty node condition",
            file=out,
        )
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
    d = client(
        isub.add_parser(
            "detect",
            help="open incidents for GPUs reporting a fatal XID (Prometheus) or faulty node conditions",
        )
    )
    d.add_argument("--prometheus", help="Prometheus's URL, e.g. http://127.0.0.1:9090 (XID errors)")
    d.add_argument("--kubeconfig", help="read the nodes' conditions from this cluster's API server")
    d.add_argument(
        "--xid",
        type=int,
        action="append",
        default=None,
        help="count this XID as fatal (repeatable; default: the XIDs NVIDIA resolves by a GPU reset)",
    )
    d.add_argument(
        "--ready-grace",
        type=float,
        default=300.0,
        help="seconds a node's Ready condition is False or Unknown before it is a fault (default 300)",
    )
    d.add_argument(
        "--condition",
        action="append",
        default=None,
        help="a node condition type that is a fault while True (repeatable; default: "
        "GPUMissing, GPUXIDErrors)",
    )
    d.add_argument("--every", type=float, default=0.0, help="seconds between checks (default: check once)")

    def detect(a: argparse.Namespace) -> int:
        if not a.prometheus and not a.kubeconfig:
            print("error: give --prometheus, --kubeconfig or both", file=sys.stderr)
            return 2
        fatal = set(a.xid) if a.xid else None
        problems = tuple(a.condition) if a.condition else None
        with client_of(a) as c:
            while True:
                code = detect_once(
                    c,
                    a.prometheus,
                    fatal,
                    kubeconfig=a.kubeconfig,
                    ready_grace=a.ready_grace,
                    problems=problems,
                )
                if a.every <= 0 or code != 0:
                    return code
                time.sleep(a.every)

    d.set_defaults(func=talks_to_worker(detect))

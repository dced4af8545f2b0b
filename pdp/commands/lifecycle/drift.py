"""`pdp lifecycle drift ...`: the cluster drift findings of the worker (list), an audit now (audit)
and the remediation of one finding (remediate); and the worker's `--drift-audit-every`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

Request = Callable[..., int]


def _interval(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if seconds != 0 and not 10 <= seconds <= 86400:
        raise argparse.ArgumentTypeError(f"{text} seconds: give 0 (no periodic audit) or 10 to 86400 seconds")
    return seconds


def add_drift_parsers(
    lsub: Any,
    client: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
    request: Request,
    worker: argparse.ArgumentParser,
) -> None:
    worker.add_argument(
        "--drift-audit-every",
        type=_interval,
        default=0.0,
        metavar="SECONDS",
        help="audit every cluster the worker applies to for running GPU pods the current policy would "
        "refuse or place elsewhere, this often (GET /v1/drift, gpupaas_pdp_drift_* on /metrics); "
        "default 0: only on demand (POST /v1/drift/audit)",
    )
    dr = lsub.add_parser("drift", help="running GPU pods the current policy would refuse or place elsewhere")
    dsub = dr.add_subparsers(dest="drift_command", required=True)
    ls = client(dsub.add_parser("list", help="the last audit's findings (a tenant token: its own only)"))
    ls.set_defaults(func=lambda a: request(a, "GET", "/v1/drift"))
    au = client(dsub.add_parser("audit", help="audit every cluster of the worker now (admin)"))
    au.set_defaults(func=lambda a: request(a, "POST", "/v1/drift/audit"))
    rm = client(
        dsub.add_parser(
            "remediate", help="remediate one finding by its tenant's tier: notify, grace, act (admin)"
        )
    )
    rm.add_argument("finding", help="the finding's id (drift list)")
    rm.add_argument(
        "--approve", action="store_true", help="approve acting on a tier the policy otherwise only notifies"
    )
    rm.set_defaults(
        func=lambda a: request(a, "POST", f"/v1/drift/{a.finding}/remediate", json={"approve": a.approve})
    )

"""`pdp opa status`: what OPA says about its bundles (GET /v1/status), through opa-python-client.

Exit status: 0 when every bundle is active and its last download was accepted, 1 when a bundle
is not active or OPA refused the last one it fetched (signature, digest, compile error: the lines
say which), 2 when OPA cannot be asked.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from pdp.opa.client import OpaAddressError, OpaStatusError, bundle_reports, opa_client, read_status


def cmd_opa_status(args: argparse.Namespace) -> int:
    try:
        with opa_client(args.opa_addr, timeout=args.timeout, ca_file=args.ca_file) as client:
            doc = read_status(client)
    except (OpaAddressError, OpaStatusError) as exc:
        print(f"pdp opa status: {exc}", flush=True)
        return 2
    reports = bundle_reports(doc)
    if args.json:
        print(json.dumps([r.__dict__ | {"healthy": r.healthy} for r in reports], indent=2))
    elif not reports:
        print(f"OPA at {args.opa_addr} reports no bundle")
    for r in reports if not args.json else ():
        state = "ok" if r.healthy else ("REFUSED" if r.errors else "NOT ACTIVE")
        print(f"bundle {r.name}: {state}")
        print(f"  active revision:            {r.active_revision or '-'}")
        print(f"  last successful activation: {r.last_successful_activation or '-'}")
        print(f"  last successful download:   {r.last_successful_download or '-'}")
        for line in r.errors:
            print(f"  error: {line}")
    return 0 if reports and all(r.healthy for r in reports) else 1


def add_parser(sub: Any) -> None:
    o = sub.add_parser("opa", help="ask the PDP's OPA (status of its bundles)")
    osub = o.add_subparsers(dest="opa_command", required=True)
    s = osub.add_parser("status", help="OPA's bundle status and errors (GET /v1/status)")
    s.add_argument(
        "--opa-addr",
        default="127.0.0.1:8181",
        help="OPA's REST API: HOST:PORT or http(s)://HOST:PORT (TCP; default 127.0.0.1:8181)",
    )
    s.add_argument("--ca-file", help="PEM CA bundle for an https:// OPA (default: the system's)")
    s.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for OPA")
    s.add_argument("--json", action="store_true", help="the bundles as JSON")
    s.set_defaults(func=cmd_opa_status)

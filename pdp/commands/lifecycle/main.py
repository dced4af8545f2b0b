"""`pdp lifecycle ...`: run the worker (API + workflows), and drive it from a terminal.

Client commands talk to the worker's HTTP API (--url, --token or PDP_LIFECYCLE_TOKEN); the audit
commands read the lifecycle database directly, so they work with the worker down. The worker is
`worker.py` here, the client plumbing pdp/product/client.py, each area's commands its own module
in this folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from pdp.commands.lifecycle.audit import add_parsers as add_audit_parsers
from pdp.commands.lifecycle.drift import add_drift_parsers
from pdp.commands.lifecycle.incidents import add_incident_parsers
from pdp.commands.lifecycle.rollout import add_rollout_parsers
from pdp.commands.lifecycle.tokens import add_token_parsers
from pdp.commands.lifecycle.worker import add_worker_parser
from pdp.opa.binary import STATE_ROOT
from pdp.product.client import add_client_options, follow, show, talks_to_worker
from pdp.product.client import client as _client
from pdp.product.client import request as _request


def cmd_create(args: argparse.Namespace) -> int:
    doc = yaml.safe_load(Path(args.file).read_text())
    with _client(args) as c:
        return show(c.post("/v1/tenants", json=doc))


def cmd_sla(args: argparse.Namespace) -> int:
    body = {k: v for k, v in (("tier", args.tier), ("isolation", args.isolation)) if v}
    with _client(args) as c:
        return show(c.post(f"/v1/tenants/{args.tenant}/sla", json=body))


def cmd_approvals(args: argparse.Namespace) -> int:
    with _client(args) as c:
        return show(c.get("/v1/approvals", params={"all": str(args.all).lower()}))


def cmd_approve(args: argparse.Namespace) -> int:
    with _client(args) as c:
        body = {"approved": not args.reject, "comment": args.comment}
        return show(c.post(f"/v1/approvals/{args.approval_id}", json=body))


def cmd_follow(args: argparse.Namespace) -> int:
    with _client(args) as c:

        def get() -> dict[str, Any]:
            r = c.get(f"/v1/workflows/{args.workflow_id}")
            r.raise_for_status()
            data: dict[str, Any] = r.json()
            return data

        wf = follow(get, args.timeout)
    return 0 if wf.get("status") == "SUCCESS" else 1


def cmd_capacity(args: argparse.Namespace) -> int:
    with _client(args) as c:
        return show(c.get("/v1/capacity"))


def cmd_capacity_retry(args: argparse.Namespace) -> int:
    free: dict[str, int] = {}
    for item in args.free:
        cls, sep, n = item.partition("=")
        if not sep or not n.isdigit():
            print(f"--free {item!r}: expected GPU_CLASS=N", file=sys.stderr)
            return 2
        free[cls] = int(n)
    with _client(args) as c:
        return show(c.post("/v1/capacity/retry", json={"free_gpus": free}))


def cmd_certificate(args: argparse.Namespace) -> int:
    with _client(args) as c:
        return show(c.get(f"/v1/tenants/{args.tenant}/certificate"))


def cmd_certificate_verify(args: argparse.Namespace) -> int:
    from pdp.lifecycle.services import certificate
    from pdp.lifecycle.services.certificate import verify

    try:
        cert = json.loads(Path(args.file).read_text())
    except ValueError as exc:
        print(f"FAIL {args.file}: not JSON: {exc}")
        return 1
    if args.public_key:
        pem = args.public_key.read_text()
    else:
        with httpx.Client(base_url=args.url, timeout=30) as c:
            r = c.get("/v1/certificates/public-key")
            r.raise_for_status()
            pem = str(r.json()["public_key_pem"])
    problems = verify(cert, pem)
    for p in problems:
        print(f"FAIL {p}")
    if not problems:
        tenant, kid = cert.get("certificate", {}).get("tenant"), cert["signature"]["key_id"]
        dry = certificate.dry_run_note(cert)
        if dry:
            print(f"ok: the signature verifies (Ed25519, key {kid}), but {dry}")
            print(f"{dry}: this certificate of destruction for {tenant!r} proves no destruction")
        else:
            print(f"ok: the certificate of destruction for {tenant!r} verifies (Ed25519, key {kid})")
    return 1 if problems else 0


def cmd_effects(args: argparse.Namespace) -> int:
    with _client(args) as c:
        r = c.get("/v1/effects")
        r.raise_for_status()
        body = r.json()
    print(f"mode: {body['mode']}: {body['note']}")
    for e in body["effects"]:
        print(f"{e['seq']:5} {e['op']:13} {e['kind']:15} {e['namespace'] or '-':20} {e['name']}")
    return 0


def add_parser(sub: Any) -> None:
    root = STATE_ROOT
    lc = sub.add_parser("lifecycle", help="tenant lifecycle: product API, workflows, approvals, audit")
    lsub = lc.add_subparsers(dest="lifecycle_command", required=True)

    client = add_client_options

    def database(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--state", type=Path, default=root / "var")
        sp.add_argument("--database-url", default="", help="postgresql://... (default: SQLite under --state)")
        return sp

    worker = add_worker_parser(lsub)
    c = client(lsub.add_parser("create", help="create a tenant from a tenant YAML document"))
    c.add_argument("file")
    c.set_defaults(func=talks_to_worker(cmd_create))
    s = client(lsub.add_parser("sla", help="change a tenant's tier and/or isolation (re-places workloads)"))
    s.add_argument("tenant")
    s.add_argument("--tier", choices=("enterprise", "standard", "spot"))
    s.add_argument("--isolation", choices=("dedicated", "shared"))
    s.set_defaults(func=talks_to_worker(cmd_sla))
    a = client(lsub.add_parser("approvals", help="list open approvals"))
    a.add_argument("--all", action="store_true", help="resolved ones too")
    a.set_defaults(func=talks_to_worker(cmd_approvals))
    ap = client(lsub.add_parser("approve", help="approve (or --reject) a pending request"))
    ap.add_argument("approval_id")
    ap.add_argument("--reject", action="store_true")
    ap.add_argument("--comment", default="")
    ap.set_defaults(func=talks_to_worker(cmd_approve))
    f = client(lsub.add_parser("follow", help="follow a workflow, showing its steps"))
    f.add_argument("workflow_id")
    f.add_argument("--timeout", type=float, default=600)
    f.set_defaults(func=talks_to_worker(cmd_follow))
    cap = client(lsub.add_parser("capacity", help="GPU capacity per class and the queue, in retry order"))
    cap.set_defaults(func=talks_to_worker(cmd_capacity))
    cr = client(lsub.add_parser("capacity-retry", help="retry the queued deployments now"))
    cr.add_argument(
        "--free", action="append", default=[], metavar="GPU_CLASS=N", help="GPUs the scheduler reports free"
    )
    cr.set_defaults(func=talks_to_worker(cmd_capacity_retry))
    ct = client(lsub.add_parser("certificate", help="a tenant's certificate of destruction (JSON)"))
    ct.add_argument("tenant")
    ct.set_defaults(func=talks_to_worker(cmd_certificate))
    cv = client(lsub.add_parser("certificate-verify", help="verify a certificate of destruction's signature"))
    cv.add_argument("file", help="the certificate as `pdp lifecycle certificate` prints it")
    cv.add_argument(
        "--public-key", type=Path, help="PEM public key (default: the worker's /v1/certificates/public-key)"
    )
    cv.set_defaults(func=talks_to_worker(cmd_certificate_verify))

    add_audit_parsers(lsub, database)
    client(lsub.add_parser("effects", help="what the dry-run adapter would have applied")).set_defaults(
        func=talks_to_worker(cmd_effects)
    )
    add_token_parsers(lsub, client, _request)
    add_incident_parsers(lsub, client, _request, talks_to_worker, _client)
    add_drift_parsers(lsub, client, _request, worker)
    add_rollout_parsers(lsub, client, _request, _client, talks_to_worker)

"""`pdp lifecycle ...`: run the worker (API + workflows), and drive it from a terminal.

Client commands talk to the worker's HTTP API (--url, --token or PDP_LIFECYCLE_TOKEN); the audit
commands read the lifecycle database directly, so they work with the worker down.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from pdp.opa.binary import PROJECT_ROOT
from pdp.options import embedded_settings, with_config

DEFAULT_URL = "http://127.0.0.1:8700"
FINAL = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


def _client(args: argparse.Namespace) -> httpx.Client:
    token = args.token or os.environ.get("PDP_LIFECYCLE_TOKEN", "")
    return httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _show(response: httpx.Response) -> int:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    json.dump(body, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if response.is_success else 1


def cmd_worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    import uvicorn

    from pdp.lifecycle.api import create_app
    from pdp.lifecycle.worker import Worker, WorkerOptions

    pdp = embedded_settings(args)
    options = WorkerOptions(
        pdp=pdp,
        database_url=args.database_url or os.environ.get("PDP_LIFECYCLE_DATABASE_URL", ""),
        kubeconfig=str(args.kubeconfig) if args.kubeconfig else None,
        approval_timeout=args.approval_timeout,
        capacity_retry_schedule=args.capacity_retry_schedule,
        certificate_key=args.certificate_key,
        audit_anchor=args.audit_anchor,
        audit_reanchor=args.audit_reanchor,
        destroy_timeout=args.destroy_timeout,
        slurm_conf=args.slurm_conf,
        slurm_cluster=args.slurm_cluster,
        slurm_users=args.slurm_users,
    )
    worker = Worker(options)
    worker.start()
    host, _, port = args.listen.rpartition(":")
    server = uvicorn.Server(uvicorn.Config(create_app(), host=host, port=int(port), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"lifecycle API on http://{args.listen}", flush=True)
    stop.wait()
    server.should_exit = True
    thread.join(timeout=5)
    worker.stop()
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    doc = yaml.safe_load(Path(args.file).read_text())
    with _client(args) as c:
        return _show(c.post("/v1/tenants", json=doc))


def cmd_sla(args: argparse.Namespace) -> int:
    body = {k: v for k, v in (("tier", args.tier), ("isolation", args.isolation)) if v}
    with _client(args) as c:
        return _show(c.post(f"/v1/tenants/{args.tenant}/sla", json=body))


def cmd_approvals(args: argparse.Namespace) -> int:
    with _client(args) as c:
        return _show(c.get("/v1/approvals", params={"all": str(args.all).lower()}))


def cmd_approve(args: argparse.Namespace) -> int:
    with _client(args) as c:
        body = {"approved": not args.reject, "comment": args.comment}
        return _show(c.post(f"/v1/approvals/{args.approval_id}", json=body))


def follow(get: Callable[[], dict[str, Any]], timeout: float, out: Any = sys.stdout) -> dict[str, Any]:
    """Poll a workflow, printing each new step and the final status."""
    shown = 0
    deadline = time.monotonic() + timeout
    while True:
        wf = get()
        for step in wf.get("steps", [])[shown:]:
            out.write(f"  step {shown + 1}: {step}\n")
            shown += 1
        if wf.get("status") in FINAL or time.monotonic() > deadline:
            out.write(f"{wf.get('workflow_id')}: {wf.get('status')} {json.dumps(wf.get('output'))[:300]}\n")
            out.flush()
            return wf
        out.flush()
        time.sleep(0.5)


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
        return _show(c.get("/v1/capacity"))


def cmd_capacity_retry(args: argparse.Namespace) -> int:
    free: dict[str, int] = {}
    for item in args.free:
        cls, sep, n = item.partition("=")
        if not sep or not n.isdigit():
            print(f"--free {item!r}: expected GPU_CLASS=N", file=sys.stderr)
            return 2
        free[cls] = int(n)
    with _client(args) as c:
        return _show(c.post("/v1/capacity/retry", json={"free_gpus": free}))


def cmd_certificate(args: argparse.Namespace) -> int:
    with _client(args) as c:
        return _show(c.get(f"/v1/tenants/{args.tenant}/certificate"))


def cmd_certificate_verify(args: argparse.Namespace) -> int:
    from pdp.lifecycle.certificate import verify

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
        print(f"ok: the certificate of destruction for {tenant!r} verifies (Ed25519, key {kid})")
    return 1 if problems else 0


def _db(args: argparse.Namespace) -> Any:
    from pdp.lifecycle.db import Database

    url = args.database_url or os.environ.get("PDP_LIFECYCLE_DATABASE_URL", "")
    return Database(url or f"sqlite:///{args.state / 'lifecycle' / 'lifecycle.sqlite'}")


def _anchor_path(args: argparse.Namespace) -> Path:
    return Path(args.anchor or args.state / "lifecycle" / "audit-anchor.json")


def _public_key(args: argparse.Namespace) -> Any:
    from pdp.lifecycle import certificate

    if args.public_key:
        return certificate.load_public_pem(args.public_key.read_text())
    # On the worker's machine: the public half of its signing key (never generated here).
    path = args.certificate_key or args.state / "lifecycle" / "certificate-signing-key.pem"
    return certificate.load_key(path).public_key()


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from pdp.lifecycle import anchor, certificate

    try:
        public = _public_key(args)
    except (OSError, ValueError, certificate.KeyFileError) as exc:
        print(f"FAIL no public key to check the audit anchor with (--public-key): {exc}")
        return 1
    if args.file:
        report = anchor.verify_export(Path(args.file).read_text(), public)
    else:
        report = anchor.verify(_db(args), _anchor_path(args), public)
    for p in report.problems:
        print(f"FAIL {p}")
    for note in report.notes:
        print(f"note: {note}")
    if report.ok:
        at = f"anchored at record {report.anchor.seq}" if report.anchor else "empty, nothing anchored"
        print(f"ok: the audit trail verifies ({report.chain_end} records; {at})")
    return 0 if report.ok else 1


def cmd_audit_export(args: argparse.Namespace) -> int:
    from pdp.lifecycle import certificate
    from pdp.lifecycle.anchor import export_jsonl

    try:
        key = certificate.load_key(
            args.certificate_key or args.state / "lifecycle" / "certificate-signing-key.pem"
        )
    except (OSError, ValueError, certificate.KeyFileError) as exc:
        key = None  # still exported, unsealed: a verifier will say deletions cannot be detected
        print(f"warning: export not sealed, no signing key: {exc}", file=sys.stderr)
    sys.stdout.write(export_jsonl(_db(args), _anchor_path(args), args.tenant, key))
    return 0


def cmd_effects(args: argparse.Namespace) -> int:
    from pdp.lifecycle.adapters.dryrun import DryRunAdapter

    for e in DryRunAdapter(_db(args)).effects():
        print(f"{e['seq']:5} {e['op']:7} {e['kind']:15} {e['namespace'] or '-':20} {e['name']}")
    return 0


def add_parser(sub: Any) -> None:
    root = PROJECT_ROOT
    lc = sub.add_parser("lifecycle", help="tenant lifecycle: product API, workflows, approvals, audit")
    lsub = lc.add_subparsers(dest="lifecycle_command", required=True)

    def client(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--url", default=os.environ.get("PDP_LIFECYCLE_URL", DEFAULT_URL))
        sp.add_argument("--token", help="bearer token (default: $PDP_LIFECYCLE_TOKEN)")
        return sp

    def database(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--state", type=Path, default=root / "var")
        sp.add_argument("--database-url", default="", help="postgresql://... (default: SQLite under --state)")
        return sp

    w = with_config(lsub.add_parser("worker", help="run the API and the durable workflows"))
    w.add_argument("--listen", default="127.0.0.1:8700")
    w.add_argument("--database-url", default="", help="postgresql://... (default: SQLite under --state)")
    w.add_argument("--kubeconfig", type=Path, help="apply to this cluster (default: the dry-run adapter)")
    w.add_argument("--approval-timeout", type=float, default=24 * 3600.0, help="seconds per approval round")
    w.add_argument(
        "--capacity-retry-schedule",
        default="0 * * * * *",
        help="cron (6 fields: seconds first) of the periodic retry of queued deployments; '' turns it off",
    )
    w.add_argument(
        "--certificate-key",
        type=Path,
        help="Ed25519 key signing certificates of destruction and the audit anchor, generated "
        "(mode 0600) if absent (default: <state>/lifecycle/certificate-signing-key.pem)",
    )
    w.add_argument(
        "--audit-anchor",
        type=Path,
        help="file holding the signed head of the audit chain (default: <state>/lifecycle/audit-anchor.json)",
    )
    w.add_argument(
        "--audit-reanchor",
        action="store_true",
        help="anchor the trail anew although its anchor file is missing (recorded in the trail)",
    )
    w.add_argument(
        "--destroy-timeout",
        type=float,
        default=300.0,
        help="seconds offboarding waits for deleted objects (Terminating namespaces) to be gone",
    )
    w.add_argument("--slurm-conf", type=Path, help="also realize tenants on this Slurm cluster (sacctmgr)")
    w.add_argument("--slurm-cluster", default="gpupaas", help="the Slurm ClusterName")
    w.add_argument(
        "--slurm-users", type=Path, help='YAML: tenant -> Unix users who submit as it ("*": every tenant)'
    )
    w.set_defaults(func=cmd_worker)
    c = client(lsub.add_parser("create", help="create a tenant from a tenant YAML document"))
    c.add_argument("file")
    c.set_defaults(func=cmd_create)
    s = client(lsub.add_parser("sla", help="change a tenant's tier and/or isolation (re-places workloads)"))
    s.add_argument("tenant")
    s.add_argument("--tier", choices=("enterprise", "standard", "spot"))
    s.add_argument("--isolation", choices=("dedicated", "shared"))
    s.set_defaults(func=cmd_sla)
    a = client(lsub.add_parser("approvals", help="list open approvals"))
    a.add_argument("--all", action="store_true", help="resolved ones too")
    a.set_defaults(func=cmd_approvals)
    ap = client(lsub.add_parser("approve", help="approve (or --reject) a pending request"))
    ap.add_argument("approval_id")
    ap.add_argument("--reject", action="store_true")
    ap.add_argument("--comment", default="")
    ap.set_defaults(func=cmd_approve)
    f = client(lsub.add_parser("follow", help="follow a workflow, showing its steps"))
    f.add_argument("workflow_id")
    f.add_argument("--timeout", type=float, default=600)
    f.set_defaults(func=cmd_follow)
    cap = client(lsub.add_parser("capacity", help="GPU capacity per class and the queue, in retry order"))
    cap.set_defaults(func=cmd_capacity)
    cr = client(lsub.add_parser("capacity-retry", help="retry the queued deployments now"))
    cr.add_argument(
        "--free", action="append", default=[], metavar="GPU_CLASS=N", help="GPUs the scheduler reports free"
    )
    cr.set_defaults(func=cmd_capacity_retry)
    ct = client(lsub.add_parser("certificate", help="a tenant's certificate of destruction (JSON)"))
    ct.add_argument("tenant")
    ct.set_defaults(func=cmd_certificate)
    cv = client(lsub.add_parser("certificate-verify", help="verify a certificate of destruction's signature"))
    cv.add_argument("file", help="the certificate as `pdp lifecycle certificate` prints it")
    cv.add_argument(
        "--public-key", type=Path, help="PEM public key (default: the worker's /v1/certificates/public-key)"
    )
    cv.set_defaults(func=cmd_certificate_verify)

    def anchored(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--anchor", type=Path, help="default: <state>/lifecycle/audit-anchor.json")
        sp.add_argument(
            "--certificate-key",
            type=Path,
            help="the worker's signing key: seals exports, its public half checks anchors "
            "(default: <state>/lifecycle/certificate-signing-key.pem)",
        )
        return sp

    av = anchored(
        database(lsub.add_parser("audit-verify", help="verify the hash chain and its signed anchor"))
    )
    av.add_argument("--file", type=Path, help="verify an exported trail (JSON lines) instead, offline")
    av.add_argument("--public-key", type=Path, help="PEM public key of the worker's signing key")
    av.set_defaults(func=cmd_audit_verify)
    ae = anchored(
        database(
            lsub.add_parser("audit-export", help="the audit trail as JSON lines, then its anchor and seal")
        )
    )
    ae.add_argument("--tenant")
    ae.set_defaults(func=cmd_audit_export)
    database(lsub.add_parser("effects", help="what the dry-run adapter applied")).set_defaults(
        func=cmd_effects
    )

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

    from pdp.cli import embedded_settings  # here, not at the top: pdp.cli imports this module
    from pdp.lifecycle.api import create_app
    from pdp.lifecycle.worker import Worker, WorkerOptions

    pdp = embedded_settings(args)
    options = WorkerOptions(
        pdp=pdp,
        database_url=args.database_url or os.environ.get("PDP_LIFECYCLE_DATABASE_URL", ""),
        kubeconfig=str(args.kubeconfig) if args.kubeconfig else None,
        approval_timeout=args.approval_timeout,
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


def _db(args: argparse.Namespace) -> Any:
    from pdp.lifecycle.db import Database

    url = args.database_url or os.environ.get("PDP_LIFECYCLE_DATABASE_URL", "")
    return Database(url or f"sqlite:///{args.state / 'lifecycle' / 'lifecycle.sqlite'}")


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from pdp.lifecycle.audit import verify

    problems = verify(_db(args))
    for p in problems:
        print(f"FAIL {p}")
    if not problems:
        print("ok: the audit trail verifies")
    return 1 if problems else 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    from pdp.lifecycle.audit import export_jsonl

    sys.stdout.write(export_jsonl(_db(args), args.tenant))
    return 0


def cmd_effects(args: argparse.Namespace) -> int:
    from pdp.lifecycle.adapters.dryrun import DryRunAdapter

    for e in DryRunAdapter(_db(args)).effects():
        print(f"{e['seq']:5} {e['op']:7} {e['kind']:15} {e['namespace'] or '-':20} {e['name']}")
    return 0


def add_parser(
    sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser], root: Path
) -> None:
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
    w.set_defaults(func=cmd_worker)
    c = client(lsub.add_parser("create", help="create a tenant from a tenant YAML document"))
    c.add_argument("file")
    c.set_defaults(func=cmd_create)
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
    database(lsub.add_parser("audit-verify", help="verify the hash chain")).set_defaults(
        func=cmd_audit_verify
    )
    ae = database(lsub.add_parser("audit-export", help="the audit trail as JSON lines"))
    ae.add_argument("--tenant")
    ae.set_defaults(func=cmd_audit_export)
    database(lsub.add_parser("effects", help="what the dry-run adapter applied")).set_defaults(
        func=cmd_effects
    )

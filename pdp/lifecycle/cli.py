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

from pdp.lifecycle.audit_cli import add_parsers as add_audit_parsers
from pdp.lifecycle.cli_drift import add_drift_parsers
from pdp.lifecycle.cli_incidents import add_incident_parsers
from pdp.lifecycle.cli_rollout import add_rollout_parsers
from pdp.lifecycle.cli_tokens import WORKER_CREDENTIALS, add_token_parsers, add_worker_options, token_policy
from pdp.listen import add_tls_options, check_plaintext, tls_files
from pdp.opa.binary import PROJECT_ROOT
from pdp.options import (
    configure_logging,
    embedded_settings,
    env_path,
    warn_unprotected_records,
    with_config,
    with_records,
)

DEFAULT_URL = "http://127.0.0.1:8700"
FINAL = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


class MissingToken(Exception):
    pass


def _client(args: argparse.Namespace) -> httpx.Client:
    """A client of the worker's API with the caller's token: --token, else $PDP_LIFECYCLE_TOKEN."""
    token = args.token or os.environ.get("PDP_LIFECYCLE_TOKEN", "")
    if not token:
        raise MissingToken
    return httpx.Client(base_url=args.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else json.dumps(detail)[:300]


def talks_to_worker(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A client command: a missing token, an unreachable worker or a refused call is one line on
    stderr (and exit 2 or 1), never a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except MissingToken:
            print(
                "error: no token: give --token or set PDP_LIFECYCLE_TOKEN (an admin token is the "
                "worker's PDP_LIFECYCLE_ADMIN_TOKEN; a tenant token is printed once by `create`)",
                file=sys.stderr,
            )
            return 2
        except httpx.HTTPStatusError as exc:
            r = exc.response
            print(
                f"error: {r.request.method} {r.request.url.path}: {r.status_code} {_detail(r)}",
                file=sys.stderr,
            )
            return 1
        except httpx.HTTPError as exc:
            print(f"error: cannot reach the lifecycle worker at {args.url}: {exc}", file=sys.stderr)
            return 1

    return run


def _request(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> int:
    """One call of the worker's API, its answer shown (errors as talks_to_worker says)."""

    def call(a: argparse.Namespace) -> int:
        with _client(a) as c:
            return _show(c.request(method, path, **kwargs))

    return talks_to_worker(call)(args)


def _show(response: httpx.Response) -> int:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    json.dump(body, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if response.is_success else 1


def cmd_worker(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    import uvicorn

    from pdp.config.documents import ConfigErrors
    from pdp.lifecycle.api import create_app
    from pdp.lifecycle.credentials import CredentialError
    from pdp.lifecycle.worker import Worker, WorkerOptions

    configure_logging()
    tls = tls_files(args.tls_cert, args.tls_key, "--tls-cert", "--tls-key")
    host, port = check_plaintext(
        "--listen", args.listen, tls=tls, insecure=args.insecure, carries="bearer tokens and tenant data"
    )
    if args.bundles is None:  # the worker's bundle is its own, under its state, not the repository's
        args.bundles = args.state / "lifecycle" / "bundles"
    pdp = embedded_settings(args)
    options = WorkerOptions(
        pdp=pdp,
        database_url=args.database_url or os.environ.get("PDP_LIFECYCLE_DATABASE_URL", ""),
        kubeconfig=str(args.kubeconfig) if args.kubeconfig else None,
        clusters=args.clusters,
        cluster_retry_interval=args.cluster_retry_interval,
        approval_timeout=args.approval_timeout,
        capacity_retry_schedule=args.capacity_retry_schedule,
        certificate_key=args.certificate_key,
        audit_checkpoints=args.audit_checkpoints,
        audit_trusted_key=args.audit_trusted_key,
        audit_reanchor=args.audit_reanchor,
        destroy_timeout=args.destroy_timeout,
        decision_wait=args.decision_wait,
        pool_retry_interval=args.pool_retry_interval,
        prometheus=args.prometheus,
        admin_token_file=args.admin_token_file,
        tokens=token_policy(args),
        slurm_conf=args.slurm_conf,
        slurm_cluster=args.slurm_cluster,
        slurm_users=args.slurm_users,
        drift_audit_every=args.drift_audit_every,
    )
    worker = Worker(options)
    try:
        worker.start()
    except (CredentialError, ConfigErrors, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # before anything else is said
        return 2
    warn_unprotected_records(args, logging.getLogger("pdp.records"))
    config = uvicorn.Config(
        create_app(),
        host=host,
        port=port,
        log_level="warning",
        ssl_certfile=tls.cert if tls else None,
        ssl_keyfile=tls.key if tls else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"lifecycle API on {'https' if tls else 'http'}://{args.listen}", flush=True)
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


def decision_line(d: dict[str, Any]) -> str:
    """One line for a request's decision as `GET /v1/workflows/{id}` shows it (pure)."""
    codes = ", ".join(d.get("reason_codes") or []) or "-"
    usage = " usage " + json.dumps(d["usage"], sort_keys=True) if d.get("usage") else ""
    approval = f" approval {d['approval_id']}" if d.get("status") == "awaiting_approval" else ""
    return (
        f"  decision: {d.get('status')} {d.get('outcome') or ''} ({codes}) decision {d.get('decision_id')} "
        f"revision {d.get('bundle_revision')}{usage}{approval}"
    )


def follow(get: Callable[[], dict[str, Any]], timeout: float, out: Any = sys.stdout) -> dict[str, Any]:
    """Poll a workflow, printing each new step, each decision as it is made (a request needing
    approval is decided again after it), and the final status."""
    shown = 0
    decided: tuple[Any, Any] | None = None
    deadline = time.monotonic() + timeout
    while True:
        wf = get()
        for step in wf.get("steps", [])[shown:]:
            out.write(f"  step {shown + 1}: {step}\n")
            shown += 1
        d = wf.get("decision")
        if d and (d.get("decision_id"), d.get("status")) != decided:
            decided = (d.get("decision_id"), d.get("status"))
            out.write(decision_line(d) + "\n")
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
    from pdp.lifecycle import certificate
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
    root = PROJECT_ROOT
    lc = sub.add_parser("lifecycle", help="tenant lifecycle: product API, workflows, approvals, audit")
    lsub = lc.add_subparsers(dest="lifecycle_command", required=True)

    def client(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--url",
            default=os.environ.get("PDP_LIFECYCLE_URL", DEFAULT_URL),
            help=f"the worker's API (default: $PDP_LIFECYCLE_URL, else {DEFAULT_URL})",
        )
        sp.add_argument("--token", help="bearer token (default: $PDP_LIFECYCLE_TOKEN)")
        return sp

    def database(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--state", type=Path, default=root / "var")
        sp.add_argument("--database-url", default="", help="postgresql://... (default: SQLite under --state)")
        return sp

    w = with_records(
        with_config(
            lsub.add_parser(
                "worker",
                help="run the API and the durable workflows (needs an admin token: see worker --help)",
                description="Run the product API and the durable workflows in one process.",
                epilog=WORKER_CREDENTIALS,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
        )
    )
    w.add_argument("--listen", default="127.0.0.1:8700")
    add_tls_options(w, "the product API")
    add_worker_options(w)
    w.add_argument("--database-url", default="", help="postgresql://... (default: SQLite under --state)")
    w.add_argument("--kubeconfig", type=Path, help="apply to this cluster (default: the dry-run adapter)")
    w.add_argument(
        "--clusters",
        type=Path,
        help="clusters-access document (YAML: clusters: {NAME: {kubeconfig: PATH, context: C} | {in_cluster: "
        "true}}) naming every cluster of the fleet: one adapter per cluster, tenants realized only in the "
        "clusters their policy allows (instead of --kubeconfig)",
    )
    w.add_argument(
        "--cluster-retry-interval",
        type=float,
        default=2.0,
        help="seconds between attempts to reach an unreachable cluster (the workflow waits, never skips it)",
    )
    w.add_argument("--approval-timeout", type=float, default=24 * 3600.0, help="seconds per approval round")
    w.add_argument(
        "--capacity-retry-schedule",
        default="0 * * * * *",
        help="cron (6 fields: seconds first) of the periodic retry of queued deployments; '' turns it off",
    )
    w.add_argument(
        "--certificate-key",
        type=Path,
        help="Ed25519 key signing certificates of destruction and the audit checkpoints, generated "
        "(mode 0600) if absent (default: <state>/lifecycle/certificate-signing-key.pem)",
    )
    w.add_argument(
        "--audit-checkpoints",
        metavar="SINK",
        default=os.environ.get("PDP_AUDIT_CHECKPOINTS", ""),
        help="where the audit trail's signed checkpoints go, outside --state: file:PATH (an append-only "
        "file) or dir:PATH (write-once files) (default $PDP_AUDIT_CHECKPOINTS, else "
        "<state>/lifecycle/audit-checkpoints.jsonl, which catches accidents only)",
    )
    w.add_argument(
        "--audit-trusted-key",
        type=Path,
        default=env_path("PDP_AUDIT_TRUSTED_KEY"),
        help="the public key verifiers trust; a certificate key that does not match it is refused "
        "(default $PDP_AUDIT_TRUSTED_KEY)",
    )
    w.add_argument(
        "--audit-reanchor",
        action="store_true",
        help="checkpoint the trail anew although the sink holds none of its checkpoints (recorded in it)",
    )
    w.add_argument(
        "--destroy-timeout",
        type=float,
        default=300.0,
        help="seconds offboarding waits for deleted objects (Terminating namespaces) to be gone",
    )
    w.add_argument(
        "--decision-wait",
        type=float,
        default=10.0,
        help="seconds the API waits for a request's decision before answering 202 without it",
    )
    w.add_argument(
        "--pool-retry-interval",
        type=float,
        default=300.0,
        help="seconds between re-plans of a dedicated pool waiting for capacity (a capacity retry "
        "wakes it at once)",
    )
    w.add_argument(
        "--prometheus",
        default="",
        help="Prometheus URL the reclaim of idle GPUs reads (POST /v1/reclaim; docs/operations.md)",
    )
    w.add_argument("--slurm-conf", type=Path, help="also realize tenants on this Slurm cluster (sacctmgr)")
    w.add_argument("--slurm-cluster", default="gpupaas", help="the Slurm ClusterName")
    w.add_argument(
        "--slurm-users", type=Path, help='YAML: tenant -> Unix users who submit as it ("*": every tenant)'
    )
    # Tenant documents, fleet and bundle of the worker live under --state; --tenants and --fleet
    # are only read, --bundles defaults to <state>/lifecycle/bundles.
    w.set_defaults(func=cmd_worker, bundles=None)
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
    add_drift_parsers(lsub, client, _request, w)
    add_rollout_parsers(lsub, client, _request, _client, talks_to_worker)

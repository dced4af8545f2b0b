"""`pdp lifecycle worker`: the product API and the durable workflows in one process."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pdp.commands.lifecycle.tokens import WORKER_CREDENTIALS, add_worker_options, token_policy
from pdp.net.listen import add_tls_options, check_plaintext, tls_files
from pdp.options import (
    configure_logging,
    embedded_settings,
    env_path,
    note_default_checkpoints,
    with_config,
    with_records,
)

# Seconds the API is given on SIGTERM to answer the requests in flight, then to close: with
# pdp.lifecycle.worker.STEP_GRACE the whole stop stays within 5 s whatever the workflows wait for.
API_GRACE = 1


def cmd_worker(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    import uvicorn

    from pdp.config.documents import ConfigErrors
    from pdp.integrity.sinks import SinkError
    from pdp.lifecycle.storage.credentials import CredentialError
    from pdp.lifecycle.worker import Worker, WorkerOptions, exit_leaving
    from pdp.product.app import create_app

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
    except (CredentialError, ConfigErrors, SinkError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # before anything else is said
        return 2
    note_default_checkpoints(args, logging.getLogger("pdp.records.log"))
    config = uvicorn.Config(
        create_app(),
        host=host,
        port=port,
        log_level="warning",
        ssl_certfile=tls.cert if tls else None,
        ssl_keyfile=tls.key if tls else None,
        timeout_graceful_shutdown=API_GRACE,
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
    thread.join(timeout=API_GRACE + 0.5)
    return exit_leaving(worker.stop(), 0)


def add_worker_parser(lsub: Any) -> argparse.ArgumentParser:
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
        "file) or dir:PATH (write-once files) (default $PDP_AUDIT_CHECKPOINTS, else a file kept for "
        "--state under $PDP_CHECKPOINT_HOME, else ~/.local/state/gpupaas/checkpoints)",
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
    return w

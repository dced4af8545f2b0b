"""The lifecycle worker: PDP (embedded OPA), DBOS (SQLite or PostgreSQL), adapter and the HTTP API
in one process. Restarting it resumes every workflow that was in flight (DBOS recovery)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dbos import DBOS, DBOSConfig

from pdp.embedded import EmbeddedPDP, EmbeddedSettings
from pdp.lifecycle import anchor, certificate, workflows
from pdp.lifecycle.adapters import Adapter, Substrate
from pdp.lifecycle.adapters.dryrun import DryRunAdapter
from pdp.lifecycle.db import Database
from pdp.lifecycle.policy import PolicyGateway
from pdp.lifecycle.runtime import Runtime, Settings, install
from pdp.lifecycle.store import Store

# Pinned, so a restarted worker recovers workflows started by an earlier build of this code.
APPLICATION_VERSION = "gpupaas-lifecycle-1"
RETRY_EVERY_MINUTE = "0 * * * * *"


@dataclass(frozen=True)
class WorkerOptions:
    pdp: EmbeddedSettings
    database_url: str = ""  # postgresql://... ; empty: SQLite files under the state directory
    kubeconfig: str | None = None
    approval_timeout: float = 24 * 3600.0
    admin_token_env: str = "PDP_LIFECYCLE_ADMIN_TOKEN"
    # Cron (seconds first when six fields) of the periodic queue retry; empty: no periodic retry.
    capacity_retry_schedule: str = RETRY_EVERY_MINUTE
    # Ed25519 key signing certificates of destruction; default: in the state directory (git-ignored).
    certificate_key: Path | None = None
    # The audit trail's signed anchor (outside the database); default: in the state directory.
    audit_anchor: Path | None = None
    # Start a new anchor although the trail was anchored before (the file was lost): recorded.
    audit_reanchor: bool = False
    # Seconds offboarding waits for deleted objects (namespaces above all) to be gone.
    destroy_timeout: float = 300.0
    # Realize tenants on Slurm too: slurm.conf of the cluster (sacctmgr reads its accounting
    # settings), its ClusterName, and the YAML file mapping tenants to Unix users.
    slurm_conf: Path | None = None
    slurm_cluster: str = "gpupaas"
    slurm_users: Path | None = None

    @property
    def state(self) -> Path:
        return self.pdp.state / "lifecycle"

    @property
    def certificate_key_path(self) -> Path:
        return self.certificate_key or self.state / "certificate-signing-key.pem"

    @property
    def audit_anchor_path(self) -> Path:
        return self.audit_anchor or self.state / "audit-anchor.json"

    def urls(self) -> tuple[str, str]:
        """(lifecycle database, DBOS system database)."""
        if self.database_url:
            return self.database_url, self.database_url
        return f"sqlite:///{self.state / 'lifecycle.sqlite'}", f"sqlite:///{self.state / 'dbos.sqlite'}"


def _with_slurm(o: WorkerOptions, default: Adapter) -> tuple[Adapter, tuple[Substrate, ...]]:
    """Slurm objects to a SlurmAdapter, the rest to `default`; the cluster and the platform's QOS
    are made sure of first, so a tenant's associations can name them."""
    from pdp.lifecycle.adapters.routing import RoutingAdapter
    from pdp.substrate.slurm.accounts import API_VERSION, qos_objects
    from pdp.substrate.slurm.adapter import SlurmAdapter
    from pdp.substrate.slurm.substrate import SlurmSubstrate, load_users

    assert o.slurm_conf is not None
    slurm = SlurmAdapter(o.slurm_conf, o.slurm_cluster)
    slurm.ensure_cluster()
    for qos in qos_objects():
        slurm.apply(qos)
    users = load_users(o.slurm_users) if o.slurm_users else {}
    return RoutingAdapter(default, {API_VERSION.split("/")[0]: slurm}), (SlurmSubstrate(users),)


class Worker:
    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.stack: EmbeddedPDP | None = None
        self.runtime: Runtime | None = None

    def start(self) -> Runtime:
        o = self.options
        o.state.mkdir(parents=True, exist_ok=True)
        key = certificate.load_or_create_key(o.certificate_key_path)  # first: a bad key file stops here
        app_url, sys_url = o.urls()
        db = Database(app_url)
        # Before anything appends (DBOS recovery below resumes workflows): the previous run's
        # anchor is checked against the chain first, and every commit after re-anchors it.
        audit_anchor = anchor.Anchor(o.audit_anchor_path, key, db, o.audit_reanchor)
        audit_anchor.start()
        db.after_audit_commit = audit_anchor.advance
        self.stack = EmbeddedPDP(o.pdp).start()
        adapter: Adapter
        if o.kubeconfig:
            from pdp.substrate.kubernetes.adapter import KubernetesAdapter

            adapter = KubernetesAdapter(o.kubeconfig)
        else:
            adapter = DryRunAdapter(db)
        substrates: tuple[Substrate, ...] = ()
        if o.slurm_conf:
            adapter, substrates = _with_slurm(o, adapter)
        settings = Settings(
            approval_timeout=o.approval_timeout,
            archive_dir=o.state / "archive",
            destroy_timeout=o.destroy_timeout,
        )
        self.runtime = Runtime(
            db, Store(db), adapter, PolicyGateway(self.stack), settings, key, audit_anchor, substrates
        )
        install(self.runtime)
        admin = os.environ.get(o.admin_token_env)
        if admin:
            self.runtime.store.add_token(admin, "admin")
        config: DBOSConfig = {
            "name": "gpupaas-lifecycle",
            "system_database_url": sys_url,
            "application_version": APPLICATION_VERSION,
            "notification_listener_polling_interval_sec": 0.1,
            "log_level": "WARNING",
        }
        DBOS(config=config)
        DBOS.launch()
        # One request at a time per tenant (the partition key is the tenant name).
        DBOS.register_queue(workflows.QUEUE, partition_concurrency=1, polling_interval_sec=0.2)
        # Queue retries one at a time (across workers too), so two never spend the same free GPUs.
        DBOS.register_queue(workflows.CAPACITY_QUEUE, global_concurrency=1, polling_interval_sec=0.2)
        if o.capacity_retry_schedule:
            DBOS.apply_schedules(
                [
                    {
                        "schedule_name": workflows.RETRY_SCHEDULE,
                        "workflow_fn": workflows.scheduled_retry_workflow,
                        "schedule": o.capacity_retry_schedule,
                        "queue_name": workflows.CAPACITY_QUEUE,
                    }
                ]
            )
        else:
            DBOS.delete_schedule(workflows.RETRY_SCHEDULE)  # one an earlier start may have left
        return self.runtime

    def stop(self) -> None:
        DBOS.destroy(destroy_registry=False)
        if self.stack:
            self.stack.stop()
        if self.runtime:
            self.runtime.db.close()

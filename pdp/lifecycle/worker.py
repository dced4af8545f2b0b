"""The lifecycle worker: PDP (embedded OPA), DBOS (SQLite or PostgreSQL), adapter and the HTTP API
in one process. Restarting it resumes every workflow that was in flight (DBOS recovery)."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from concurrent.futures import thread as futures_thread
from dataclasses import dataclass, field
from pathlib import Path

from dbos import DBOS, DBOSConfig

from pdp.config.clusters import ClusterAccess, load_clusters
from pdp.config.documents import ConfigErrors, read_yaml
from pdp.embedded import EmbeddedPDP, EmbeddedSettings
from pdp.integrity import signing
from pdp.integrity.checkpoints import require_trusted
from pdp.integrity.files import inside, private_database, private_dir
from pdp.integrity.sinks import Sink, default_sink, open_sink, sink_path
from pdp.lifecycle import workflows
from pdp.lifecycle.bearer_tokens import ADMIN_TOKEN_ENV, MIN_ADMIN_TOKEN_CHARS, admin_token_problem
from pdp.lifecycle.clusters import Clusters
from pdp.lifecycle.policy import PolicyGateway
from pdp.lifecycle.runtime import Runtime, Settings, install
from pdp.lifecycle.services import certificate, drift, policy_trees
from pdp.lifecycle.storage import anchor, documents
from pdp.lifecycle.storage import pools as poolrecords
from pdp.lifecycle.storage.credentials import CredentialError, TokenPolicy
from pdp.lifecycle.storage.db import Database
from pdp.lifecycle.storage.effects import EffectLog
from pdp.lifecycle.storage.store import Store
from pdp.lifecycle.workflows import sla_escalation
from pdp.substrate.base import Adapter, Substrate
from pdp.substrate.dryrun import DryRunAdapter

# Pinned, so a restarted worker recovers workflows started by an earlier build of this code.
# 2: changes decided and applied in the tenant's serialization, approvals awaited outside it
# (workflows started by version 1 are not resumed by this one).
# 3: objects applied, verified and destroyed per cluster (a clusters-access document).
APPLICATION_VERSION = "gpupaas-lifecycle-3"
RETRY_EVERY_MINUTE = "0 * * * * *"
# Seconds a stopping worker gives workflows inside a step to finish it (SIGTERM to exit must stay
# well within 5 s, whatever the workflows wait for).
STEP_GRACE = 1.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    pdp: EmbeddedSettings
    database_url: str = ""  # postgresql://... ; empty: SQLite files under the state directory
    kubeconfig: str | None = None
    # The clusters-access document (pdp/config/clusters.py): one adapter per cluster of the fleet.
    clusters: Path | None = None
    # Seconds between attempts to reach an unreachable cluster (the workflow waits for it).
    cluster_retry_interval: float = 2.0
    approval_timeout: float = 24 * 3600.0
    admin_token_env: str = ADMIN_TOKEN_ENV
    # A file holding the admin token (a mounted Secret); read instead of the environment.
    admin_token_file: Path | None = None
    tokens: TokenPolicy = field(default_factory=TokenPolicy)
    # Cron (seconds first when six fields) of the periodic queue retry; empty: no periodic retry.
    capacity_retry_schedule: str = RETRY_EVERY_MINUTE
    # Ed25519 key signing certificates of destruction; default: in the state directory (git-ignored).
    certificate_key: Path | None = None
    # Where the audit trail's signed checkpoints go (file:PATH, dir:PATH: pdp/integrity/sinks.py),
    # outside the state folder; default: a file kept for --state under the checkpoint home
    # (default_sink), also outside it.
    audit_checkpoints: str = ""
    # The public key verifiers trust: the certificate key must be its private half.
    audit_trusted_key: Path | None = None
    # Checkpoint anew a trail that was checkpointed before although the sink holds none of it.
    audit_reanchor: bool = False
    # Seconds offboarding waits for deleted objects (namespaces above all) to be gone.
    destroy_timeout: float = 300.0
    # Seconds the API waits for a request's decision before answering 202 without it.
    decision_wait: float = 10.0
    # Seconds between re-plans of a dedicated pool waiting for capacity (capacity retries wake it too).
    pool_retry_interval: float = 300.0
    # The Prometheus the reclaim of idle GPUs reads (POST /v1/reclaim); empty: none.
    prometheus: str = ""
    # Realize tenants on Slurm too: slurm.conf of the cluster (sacctmgr reads its accounting
    # settings), its ClusterName, and the YAML file mapping tenants to Unix users.
    slurm_conf: Path | None = None
    slurm_cluster: str = "gpupaas"
    slurm_users: Path | None = None
    # Seconds between cluster drift audits of every cluster the worker applies to
    # (pdp/lifecycle/services/drift.py); 0: only on demand (POST /v1/drift/audit).
    drift_audit_every: float = 0.0

    @property
    def state(self) -> Path:
        return self.pdp.state / "lifecycle"

    @property
    def tenants(self) -> Path:
        """The lifecycle's tenant documents, from which its bundle is built (never the repository)."""
        return self.state / "tenants"

    @property
    def fleet(self) -> Path:
        """The fleet its bundle carries: `--fleet` with the carved dedicated pools."""
        return self.state / "fleet.yaml"

    @property
    def certificate_key_path(self) -> Path:
        return self.certificate_key or self.state / "certificate-signing-key.pem"

    def audit_sink(self) -> Sink:
        if self.audit_checkpoints:
            return open_sink(self.audit_checkpoints)
        return open_sink(
            default_sink(
                self.pdp.state,
                anchor.AUDIT_CHECKPOINTS,
                anchor.AUDIT_OPTION,
                legacy=self.state / anchor.AUDIT_CHECKPOINTS,
            )
        )

    def urls(self) -> tuple[str, str]:
        """(lifecycle database, DBOS system database)."""
        if self.database_url:
            return self.database_url, self.database_url
        return f"sqlite:///{self.state / 'lifecycle.sqlite'}", f"sqlite:///{self.state / 'dbos.sqlite'}"


def read_admin_token(options: WorkerOptions) -> tuple[str, str]:
    """(the admin token, where it came from); CredentialError saying how to provide one."""
    if options.admin_token_file is not None:
        source = str(options.admin_token_file)
        try:
            token = options.admin_token_file.read_text().strip()
        except OSError as exc:
            raise CredentialError(f"--admin-token-file {source}: cannot be read ({exc.strerror})") from exc
    else:
        source = options.admin_token_env
        token = os.environ.get(source, "").strip()
    if not token:
        raise CredentialError(
            f"no admin credential: set {ADMIN_TOKEN_ENV} (or give --admin-token-file) to a token of "
            f"at least {MIN_ADMIN_TOKEN_CHARS} characters, e.g. "
            f"`export {ADMIN_TOKEN_ENV}=$(openssl rand -hex 32)`"
        )
    problem = admin_token_problem(token)
    if problem:
        raise CredentialError(f"the admin token in {source} {problem}")
    return token, source


def _with_slurm(o: WorkerOptions, default: Adapter) -> tuple[Adapter, tuple[Substrate, ...]]:
    """Slurm objects to a SlurmAdapter, the rest to `default`; the cluster and the platform's QOS
    are made sure of first, so a tenant's associations can name them."""
    from pdp.substrate.routing import RoutingAdapter
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


def _cluster_access(o: WorkerOptions) -> dict[str, ClusterAccess]:
    """The clusters-access document, checked against the fleet; {} without one."""
    if not o.clusters:
        return {}
    document, errors = read_yaml(o.pdp.fleet)
    if errors:
        raise ConfigErrors(errors)
    return load_clusters(o.clusters, document["fleet"])


class Worker:
    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.stack: EmbeddedPDP | None = None
        self.runtime: Runtime | None = None
        self.drift: drift.Auditor | None = None

    def start(self) -> Runtime:
        """CredentialError, before anything starts, when the admin credential is missing, weak,
        revoked or expired."""
        o = self.options
        if o.clusters and o.kubeconfig:
            raise ValueError(
                "give --clusters (one adapter per cluster) or --kubeconfig (one cluster), not both"
            )
        access = _cluster_access(o)  # first: a bad document stops here, naming the field
        admin_token, source = read_admin_token(o)
        private_dir(o.state)
        key = certificate.load_or_create_key(o.certificate_key_path)  # first: a bad key file stops here
        trusted = signing.load_public_key(o.audit_trusted_key) if o.audit_trusted_key else None
        require_trusted(key, trusted, "the audit trail (--certificate-key, --audit-trusted-key)")
        sink = o.audit_sink()
        local = sink_path(sink)
        if local is not None and inside(local, o.pdp.state):
            log.warning(
                "audit trail: checkpoints in %s, inside the state folder: they catch accidents, not someone "
                "who can rewrite that folder; give --audit-checkpoints a sink outside it",
                sink.location,
            )
        app_url, sys_url = o.urls()
        if not o.database_url:
            private_database(o.state / "dbos.sqlite")  # DBOS would create it 0644
        db = Database(app_url)
        # Before anything appends (DBOS recovery below resumes workflows): the sink's latest
        # checkpoint is checked against the chain first, and every commit after is checkpointed.
        audit_anchor = anchor.Anchor(sink, key, db, o.audit_reanchor, trusted)
        audit_anchor.start()
        store = Store(db, o.tokens)
        store.credentials.migrate_legacy()
        # The token given now is the admin credential: earlier ones are revoked, a revoked or
        # expired one is refused (and nothing else has started yet).
        store.credentials.admit_admin(admin_token, source=source)
        # The declared tenants (--tenants, only read) join the store; the bundle is built from the
        # state folder, with the fleet the carvings left (pdp/lifecycle/storage/documents.py, fleet.py).
        imported = documents.import_declared(db, o.pdp.tenants, o.tenants)
        if imported:
            log.info("imported declared tenants from %s: %s", o.pdp.tenants, ", ".join(imported))
        settings_pdp = o.pdp.replace(
            tenants=o.tenants,
            fleet=o.fleet,
            allow_no_tenants=True,
            # the tree the last policy rollout activated, if any (pdp/lifecycle/services/policy_trees.py)
            policies=policy_trees.policies_to_build(o.state, o.pdp.policies),
        )
        self.stack = EmbeddedPDP(settings_pdp)
        gateway = PolicyGateway(
            self.stack, base_fleet=o.pdp.fleet, carvings=lambda: poolrecords.carvings_of(db)
        )
        gateway.write_fleet()
        self.stack.start()
        adapter: Adapter
        per_cluster: dict[str, Adapter] = {}
        if access:
            from pdp.lifecycle.clusters import NoSingleCluster
            from pdp.substrate.gpu_operator.adapter import SharingRealizer
            from pdp.substrate.kubernetes.adapter import KubernetesAdapter

            realizers = []
            for name, reach in access.items():
                kube = KubernetesAdapter(
                    str(reach.kubeconfig) if reach.kubeconfig else None, context=reach.context
                )
                per_cluster[name] = kube
                realizers.append(SharingRealizer(kube))
                log.info("lifecycle adapter for cluster %s: kubernetes (%s)", name, reach.describe())
            adapter = NoSingleCluster()
            # Each cluster's GPU operator sharing configuration, over that cluster's pool nodes.
            gateway.on_fleet = lambda fleet: [r.realize(fleet) for r in realizers]
            gateway.write_fleet()
        elif o.kubeconfig:
            from pdp.substrate.gpu_operator.adapter import SharingRealizer
            from pdp.substrate.kubernetes.adapter import KubernetesAdapter

            adapter = KubernetesAdapter(o.kubeconfig)
            log.info("lifecycle adapter: kubernetes (server-side apply to the cluster of %s)", o.kubeconfig)
            # The GPU operator's sharing configuration follows every fleet the bundle carries,
            # starting with this one.
            gateway.on_fleet = SharingRealizer(adapter).realize
            gateway.write_fleet()
        else:
            adapter = DryRunAdapter(EffectLog(db))
            log.info(
                "lifecycle adapter: dry-run (nothing is applied to a cluster: effects are only recorded; "
                "give --kubeconfig to apply)"
            )
        substrates: tuple[Substrate, ...] = ()
        if o.slurm_conf:
            adapter, substrates = _with_slurm(o, adapter)
        settings = Settings(
            approval_timeout=o.approval_timeout,
            archive_dir=o.state / "archive",
            state=o.state,
            destroy_timeout=o.destroy_timeout,
            decision_wait=o.decision_wait,
            pool_retry_interval=o.pool_retry_interval,
            cluster_retry_interval=o.cluster_retry_interval,
            prometheus_url=o.prometheus,
        )
        self.runtime = Runtime(
            db,
            store,
            adapter,
            gateway,
            settings,
            key,
            audit_anchor,
            substrates,
            Clusters(per_cluster, adapter),
        )
        install(self.runtime)
        config: DBOSConfig = {
            "name": "gpupaas-lifecycle",
            "system_database_url": sys_url,
            "application_version": APPLICATION_VERSION,
            "notification_listener_polling_interval_sec": 0.1,
            "log_level": "WARNING",
        }
        DBOS(config=config)
        DBOS.launch()
        # The tenant's serialization: one change at a time per tenant (the partition key is the
        # tenant name), across workers. Requests themselves run on no queue (they wait for
        # approvals, which must hold no slot): pdp/lifecycle/workflows/serial.py.
        DBOS.register_queue(workflows.QUEUE, partition_concurrency=1, polling_interval_sec=0.1)
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
        sla_escalation.schedule_checks(self.runtime)  # the periodic SLA check (fleet sla_alerting)
        stack = self.stack
        self.drift = drift.Auditor(
            self.runtime.clusters,
            stack.point,
            lambda: str(stack.bundle_status().get("active_revision") or ""),
        )
        drift.install(self.drift)
        if o.drift_audit_every > 0 and not self.drift.clusters:
            log.warning("--drift-audit-every: the worker applies to no cluster (dry run): nothing to audit")
        elif o.drift_audit_every > 0:
            self.drift.start(o.drift_audit_every)
        return self.runtime

    def stop(self, grace: float = STEP_GRACE) -> list[str]:
        """Stop DBOS (no workflow starts, is dequeued or recovered after), give the workflows
        running `grace` seconds to end, then stop the PDP and close the databases. The names of
        the workflow threads still running: they wait (DBOS.recv, DBOS.sleep) or are inside a
        step, and the process must exit without them (`exit_leaving`)."""
        if self.drift:
            self.drift.stop()
        DBOS.destroy(destroy_registry=False)
        # Only DBOS's workflow threads are left (its own background threads ended above). One
        # inside a step may finish it while the PDP and the databases are still there; one waiting
        # never ends here: DBOS has no way to interrupt a recv or a sleep in progress.
        deadline = time.monotonic() + grace
        for thread in _running():
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.stack:
            self.stack.stop()
        if self.runtime:
            self.runtime.clusters.close()
            self.runtime.db.close()
        return [t.name for t in _running()]


def _running() -> list[threading.Thread]:
    """What the interpreter would wait for at exit: the other non-daemon threads, and every
    ThreadPoolExecutor thread, daemon or not (a thread inherits the flag from the one starting it:
    the API's thread, a daemon, starts daemonic workflow threads, which exit joins all the same)."""
    me = threading.current_thread()
    pooled = set(futures_thread._threads_queues)
    return [
        t for t in threading.enumerate() if t is not me and t.is_alive() and (not t.daemon or t in pooled)
    ]


def exit_leaving(threads: list[str], code: int) -> int:
    """`code` when nothing is left running; else the process ends now, without waiting for them.

    Python joins every ThreadPoolExecutor thread at exit, so a workflow waiting for an approval
    (24 h) or an incident's resolution kept a stopped worker alive for as long: in Kubernetes a
    SIGKILL after every grace period. Exiting without them loses nothing: DBOS checkpointed each
    of those workflows up to its last completed step, and the next start resumes them from there
    (a recv or a sleep waits only what is left of its durable deadline); one cut inside a step
    re-runs that step, as after a crash (kill -9), which every step is written to survive."""
    if not threads:
        return code
    log.warning(
        "stopping with %d workflow(s) waiting or in a step (%s): they resume on the next start",
        len(threads),
        ", ".join(threads),
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

"""`pdp kueue-controller` (the PDP as Kueue's admission check) and `pdp kueue-objects` (the Kueue
objects of the platform and of every tenant, as YAML, for review or GitOps)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

from pdp.config import load_config
from pdp.options import embedded_settings, with_config
from pdp.substrate.kueue import objects
from pdp.substrate.kueue.checks import RetryPolicy
from pdp.substrate.kueue.deciders import Decider, GrpcDecider, PointDecider

LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


def _loopback(address: str) -> bool:
    return address.rpartition(":")[0].strip("[]") in LOOPBACK or address.rpartition(":")[0] in LOOPBACK


@contextmanager
def _decider(args: argparse.Namespace) -> Iterator[Decider]:
    """The PDP to ask: a PDP server over gRPC, an OPA sidecar, or an embedded OPA on --tenants."""
    with ExitStack() as stack:
        if args.pdp_server:
            from pdp.api.client import PdpClient

            if args.pdp_ca is None and not _loopback(args.pdp_server):
                raise SystemExit(f"--pdp-server {args.pdp_server} is not loopback: give --pdp-ca (TLS)")
            client = stack.enter_context(
                PdpClient(args.pdp_server, ca_file=args.pdp_ca, token_file=args.pdp_token_file)
            )
            yield GrpcDecider(client, timeout=args.decision_timeout)
            return
        from pdp.point import DecisionPoint
        from pdp.records.log import DecisionLog

        if args.opa_addr:
            from pdp.engine.opa_http import OpaHttpEngine

            engine = OpaHttpEngine(args.opa_addr)
            stack.callback(engine.close)
            log = DecisionLog(args.state / "decisions.sqlite")
            stack.callback(log.close)
            yield PointDecider(DecisionPoint(engine, log), timeout=args.decision_timeout)
            return
        from pdp.embedded import EmbeddedPDP

        pdp = stack.enter_context(EmbeddedPDP(embedded_settings(args)))
        yield PointDecider(pdp.point, timeout=args.decision_timeout)


def cmd_controller(args: argparse.Namespace) -> int:
    from pdp.substrate.kubernetes.adapter import KubernetesAdapter
    from pdp.substrate.kueue.controller import AdmissionCheckController

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pdp.kueue").setLevel(logging.INFO)
    if not (args.kubeconfig or args.in_cluster):
        raise SystemExit("give --kubeconfig FILE or --in-cluster")
    platform = [] if args.no_platform else objects.platform(load_config(args.tenants, args.fleet).fleet)
    adapter = KubernetesAdapter(str(args.kubeconfig) if args.kubeconfig else None)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with _decider(args) as decider:
        controller = AdmissionCheckController(
            adapter,
            decider,
            platform=platform,
            retry=RetryPolicy(args.retry_base_seconds, args.retry_max_seconds),
            workers=args.workers,
        ).start()
        print(f"kueue admission check controller {objects.CONTROLLER_NAME} running", flush=True)
        stop.wait()
        controller.stop()
    adapter.close()
    return 0


def cmd_objects(args: argparse.Namespace) -> int:
    config = load_config(args.tenants, args.fleet)
    docs: list[Any] = objects.platform(config.fleet)
    for _, policy in sorted(config.tenants.items()):
        docs += objects.tenant_objects(policy, config.fleet)
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0


def add_parser(sub: Any) -> None:
    c = with_config(
        sub.add_parser("kueue-controller", help="decide Kueue workloads: the PDP as a Kueue AdmissionCheck")
    )
    c.add_argument("--kubeconfig", type=Path, help="the cluster Kueue runs in")
    c.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    c.add_argument("--pdp-server", metavar="HOST:PORT", help="ask a running PDP over gRPC")
    c.add_argument("--pdp-ca", type=Path, help="PEM CA bundle: talk TLS to --pdp-server")
    c.add_argument(
        "--pdp-token-file",
        type=Path,
        help="file holding the bearer token for --pdp-server (a substrate:kueue entry of its --token-file)",
    )
    c.add_argument("--opa-addr", metavar="HOST:PORT", help="decide with an OPA sidecar at this address")
    c.add_argument("--decision-timeout", type=float, default=2.0, help="seconds per decision batch")
    c.add_argument(
        "--no-platform",
        action="store_true",
        help="do not apply the platform's Kueue objects (flavors, cohorts, priority classes, the check)",
    )
    c.add_argument(
        "--retry-base-seconds", type=int, default=10, help="first Retry backoff of a failed decision"
    )
    c.add_argument("--retry-max-seconds", type=int, default=300, help="longest Retry backoff")
    c.add_argument("--workers", type=int, default=2, help="workloads decided at once")
    c.set_defaults(func=cmd_controller)
    o = with_config(
        sub.add_parser("kueue-objects", help="print the Kueue objects of the platform and tenants")
    )
    o.set_defaults(func=cmd_objects)

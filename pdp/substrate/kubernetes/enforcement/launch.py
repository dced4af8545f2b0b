"""`pdp serve`'s enforcement points: the admission webhook (on one or more processes sharing its
port) and the scheduler extender, started from the command line's options.

`--webhook-workers N` starts N-1 `pdp serve-worker` processes that serve the webhook on the same
port with SO_REUSEPORT, each with its own engine (a client of the one OPA sidecar, or its own
wasm instances of the current bundle), as `--workers` does for gRPC (pdp/api/workers.py): one
Python process decides on one core, and the kernel spreads new connections over the processes.

`--webhook-client-ca` / `--extender-client-ca` make the fronts answer only the client certificate
kube-apiserver / kube-scheduler presents (pdp/net/clientauth.py); `pdp serve` refuses either
front off loopback without one unless told `--…-allow-unauthenticated`.

`--webhook-front` (default auto): the webhook's HTTP server. Granian (pdp/net/granian/) offers
HTTP/2 and HTTP/1.1 by ALPN and answers overload 503 per request; it verifies client certificates
against the client CA but cannot see their names, so with `--webhook-client-names` auto serves
with uvicorn (HTTP/1.1), and an explicit granian is refused rather than served with weaker
authentication. The scheduler extender is served by uvicorn.
"""

from __future__ import annotations

import argparse
import socket
import time
from pathlib import Path
from typing import Any, Protocol

from pdp.net.clientauth import ClientAuth, add_client_auth_options, client_auth
from pdp.net.limits import add_serving_limit_options, serving_limits
from pdp.net.listen import ListenError, split_host_port
from pdp.point import DecisionPoint

WORKERS_READY_SECONDS = 120.0  # a worker loads its engine first: seconds on a loaded machine


class Parts(Protocol):
    def add(self, part: Any) -> Any: ...


def add_webhook_options(sp: argparse.ArgumentParser) -> None:
    """The webhook's options, on `serve` and `serve-worker` (with the limits of every HTTP front)."""
    add_serving_limit_options(sp)
    sp.add_argument("--webhook-listen", metavar="HOST:PORT", help="serve the admission webhook (HTTPS)")
    sp.add_argument("--webhook-cert", type=Path, help="PEM certificate chain of the webhook")
    sp.add_argument("--webhook-key", type=Path, help="PEM private key of the webhook")
    add_client_auth_options(
        sp, "webhook", "kube-apiserver's, from the kubeConfigFile of its admission configuration"
    )
    sp.add_argument(
        "--webhook-front",
        choices=("auto", "granian", "uvicorn"),
        default="auto",
        help="the webhook's HTTP server: granian (HTTP/2 and HTTP/1.1 by ALPN; overload answered 503 "
        "with a JSON reason), uvicorn (HTTP/1.1; connections beyond its budget reset at accept), or "
        "auto: granian, unless --webhook-client-names asks for a check only uvicorn can make",
    )
    sp.add_argument(
        "--failure-mode",
        choices=("closed", "open-non-gpu"),
        default="closed",
        help="what the webhook does when the engine cannot decide: deny (closed), or admit objects "
        "that ask for no GPUs with a warning (open-non-gpu); GPU objects are always denied",
    )
    sp.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig for the extender's cluster view (node labels, occupancy)"
    )
    sp.add_argument(
        "--in-cluster", action="store_true", help="the extender's cluster view from the pod's service account"
    )


def webhook_client_auth(args: argparse.Namespace) -> ClientAuth | None:
    return client_auth(args.webhook_client_ca, args.webhook_client_names, "--webhook-client-names")


def extender_client_auth(args: argparse.Namespace) -> ClientAuth | None:
    return client_auth(args.extender_client_ca, args.extender_client_names, "--extender-client-names")


def webhook_front(args: argparse.Namespace) -> str:
    """The webhook's front for the options: --webhook-front, with auto resolved; a ListenError
    for granian with --webhook-client-names (it cannot check them)."""
    names = webhook_client_auth(args)
    checks_names = names is not None and bool(names.names)
    front = str(args.webhook_front)
    if front == "auto":
        return "uvicorn" if checks_names else "granian"
    if front == "granian" and checks_names:
        raise ListenError(
            "--webhook-front granian cannot check --webhook-client-names (Granian does not show the "
            "client certificate to the app): use --webhook-front uvicorn, or a client CA that signs "
            "only kube-apiserver's certificate without names"
        )
    return front


def cluster_view(args: argparse.Namespace, parts: Parts) -> Any:
    if not (args.kubeconfig or args.in_cluster):
        return None
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from pdp.substrate.kubernetes.enforcement.cluster import ClusterState

    if args.in_cluster:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        api = k8s.ApiClient()
    else:
        api = k8s_config.new_client_from_config(config_file=str(args.kubeconfig))  # type: ignore[no-untyped-call]
    return parts.add(ClusterState(api).start())


def start_webhook(
    args: argparse.Namespace, point: DecisionPoint, parts: Parts, cluster: Any, *, reuse_port: bool
) -> Any:
    from pdp.substrate.kubernetes.enforcement.webhook import AdmissionWebhook, WebhookServer

    host, port = split_host_port(args.webhook_listen, "--webhook-listen")
    return parts.add(
        WebhookServer(
            AdmissionWebhook(point, failure_mode=args.failure_mode, cluster=cluster),
            host=host,
            port=port,
            cert_file=args.webhook_cert,
            key_file=args.webhook_key,
            reuse_port=reuse_port,
            client_auth=webhook_client_auth(args),
            limits=serving_limits(args),
            front=webhook_front(args),
        ).start()
    )


def start_enforcement(
    args: argparse.Namespace,
    point: DecisionPoint,
    parts: Parts,
    *,
    engine: dict[str, Any],
    decision_log: Path | None,
) -> None:
    """The admission webhook and the scheduler extender, on the gRPC server's DecisionPoint.
    `engine`: what webhook worker processes decide with (opa_addr or wasm_bundle, WorkerSpec)."""
    if not (args.webhook_listen or args.extender_listen):
        return
    from pdp.substrate.kubernetes.enforcement.extender import ExtenderServer, SchedulerExtender

    cluster = cluster_view(args, parts)
    if args.webhook_listen:
        workers = args.webhook_workers
        if workers > 1 and args.extender_listen:
            # The extender's filters over a fleet's nodes hold this process's GIL for milliseconds
            # at a time; a review reaching this process waited behind them (webhook p99 13.8 ms
            # against 9.9 ms on a process of its own, whole trace, bench/fleet). So every
            # webhook process is a worker, and this one only holds the port.
            port = _hold_webhook_port(args, parts)
            _start_webhook_workers(args, parts, port, workers, engine, decision_log)
            url = _await_listening(args.webhook_listen, port)
            print(
                f"admission webhook on {url}/validate (failure mode {args.failure_mode}, front "
                f"{webhook_front(args)}, {workers} processes apart from the extender's)",
                flush=True,
            )
        else:
            webhook = start_webhook(args, point, parts, cluster, reuse_port=workers > 1)
            print(
                f"admission webhook on {webhook.url}/validate (failure mode {args.failure_mode}, "
                f"front {webhook.front})",
                flush=True,
            )
            if workers > 1:
                _start_webhook_workers(args, parts, webhook.port, workers - 1, engine, decision_log)
    if args.extender_listen:
        host, port = split_host_port(args.extender_listen, "--extender-listen")
        extender = parts.add(
            ExtenderServer(
                SchedulerExtender(point, cluster),
                host=host,
                port=port,
                cert_file=args.extender_cert,
                key_file=args.extender_key,
                client_auth=extender_client_auth(args),
                limits=serving_limits(args),
            ).start()
        )
        view = "with a cluster view" if cluster else "without a cluster view (nodeCacheCapable: false only)"
        print(f"scheduler extender on {extender.url} {view}", flush=True)


class _HeldPort:
    """The webhook's port, bound (so `--webhook-listen HOST:0` has one port for every worker, and
    no other program takes it between worker restarts) but never listening: the kernel spreads
    connections only over the sockets that listen, the workers'."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def stop(self) -> None:
        self.sock.close()


def _hold_webhook_port(args: argparse.Namespace, parts: Parts) -> int:
    from pdp.net.serving.listening import listening_socket

    host, port = split_host_port(args.webhook_listen, "--webhook-listen")
    held = parts.add(_HeldPort(listening_socket(host, port, reuse_port=True, option="--webhook-listen")))
    return int(held.sock.getsockname()[1])


def _await_listening(listen: str, port: int, timeout: float = WORKERS_READY_SECONDS) -> str:
    """The webhook's URL once a worker accepts connections on `port`; until then the API server
    would be refused, so `pdp serve` is not up before."""
    host, _ = split_host_port(listen, "--webhook-listen")
    reach = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((reach, port), timeout=1.0).close()
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                raise ListenError(
                    f"--webhook-listen {listen}: no webhook process listened on port {port} within "
                    f"{timeout:.0f} s ({exc.strerror or exc})"
                ) from exc
            time.sleep(0.05)
    shown = f"[{host}]" if ":" in host else host
    return f"https://{shown}:{port}"


def _start_webhook_workers(
    args: argparse.Namespace,
    parts: Parts,
    port: int,
    count: int,
    engine: dict[str, Any],
    decision_log: Path | None,
) -> None:
    from pdp.api.workers import WorkerProcesses, WorkerSpec
    from pdp.options import records_argv

    host, _ = split_host_port(args.webhook_listen, "--webhook-listen")
    host = f"[{host}]" if ":" in host else host
    webhook = [
        *("--webhook-listen", f"{host}:{port}"),
        *("--webhook-cert", str(args.webhook_cert), "--webhook-key", str(args.webhook_key)),
        *("--failure-mode", args.failure_mode),
        *("--webhook-front", args.webhook_front),
        *serving_limits(args).argv(),
    ]
    if args.webhook_client_ca:
        webhook += ["--webhook-client-ca", str(args.webhook_client_ca)]
        webhook += [f"--webhook-client-names={names}" for names in args.webhook_client_names or ()]
    if args.in_cluster:
        webhook.append("--in-cluster")
    elif args.kubeconfig:
        webhook += ["--kubeconfig", str(args.kubeconfig)]
    spec = WorkerSpec(
        listen="", decision_log=decision_log, records=records_argv(args), webhook=tuple(webhook), **engine
    )
    workers = parts.add(WorkerProcesses(spec, count).start())
    print(f"{count} admission webhook worker processes on port {port}: {workers.pids()}", flush=True)

"""Where the metrics of pdp/metrics/ are served: the `--metrics-listen` listener of `pdp serve`
(gRPC PDP, admission webhook and scheduler extender of that process), and a `/metrics` route for
the Starlette/FastAPI apps (HTTP decision API, lifecycle worker).

The listener follows pdp/net/listen.py: plaintext on loopback, TLS (--metrics-cert, --metrics-key)
off it unless --insecure. Label values are closed sets (no tenant, no object names), so what a
scraper learns is counts and latencies. prometheus_client is imported only to serve: `pdp serve`
chooses its multiprocess mode after parsing its options (pdp/net/metrics_processes.py).
"""

from __future__ import annotations

import argparse
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from pdp.net.listen import check_plaintext, tls_files
from pdp.net.metrics_processes import registry


def metrics_response(request: Request | None = None) -> Response:
    """The metrics in the Prometheus text format: this process's, or all of `pdp serve`'s
    processes' when they share them (pdp/net/metrics_processes.py)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(registry()), media_type=CONTENT_TYPE_LATEST)


def add_metrics_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus metrics at /metrics here (decisions, webhook, extender, bundle); "
        "loopback unless --metrics-cert/--metrics-key or --insecure",
    )
    sp.add_argument("--metrics-cert", type=Path, help="PEM certificate chain: serve metrics over HTTPS")
    sp.add_argument("--metrics-key", type=Path, help="PEM private key of --metrics-cert")


@dataclass
class MetricsListener:
    server: Any
    thread: threading.Thread
    url: str

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def check_metrics_options(args: argparse.Namespace) -> None:
    """Refuse a metrics listener that must not start, before anything starts."""
    if args.metrics_listen:
        check_plaintext(
            "--metrics-listen",
            args.metrics_listen,
            tls=tls_files(args.metrics_cert, args.metrics_key, "--metrics-cert", "--metrics-key"),
            insecure=args.insecure,
            tls_options="--metrics-cert and --metrics-key",
            carries="metrics",
        )


def start_metrics(args: argparse.Namespace) -> MetricsListener | None:
    """The running metrics listener, or None without --metrics-listen."""
    if not args.metrics_listen:
        return None
    from prometheus_client import start_http_server

    files = tls_files(args.metrics_cert, args.metrics_key, "--metrics-cert", "--metrics-key")
    host, port = check_plaintext(
        "--metrics-listen",
        args.metrics_listen,
        tls=files,
        insecure=args.insecure,
        tls_options="--metrics-cert and --metrics-key",
        carries="metrics",
    )
    server, thread = start_http_server(
        port,
        addr=host,
        certfile=str(files.cert) if files else None,
        keyfile=str(files.key) if files else None,
        registry=registry(),
    )
    scheme = "https" if files else "http"
    shown = f"[{host}]" if ":" in host else host
    listener = MetricsListener(server, thread, f"{scheme}://{shown}:{server.server_port}/metrics")
    print(f"metrics on {listener.url}", flush=True)
    return listener

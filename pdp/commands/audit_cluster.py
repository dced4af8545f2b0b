"""`pdp audit-cluster`: the running GPU pods the current policy revision would refuse or place
elsewhere (pdp/substrate/kubernetes/enforcement/pod_audit.py); exit 3 when there are any."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pdp.net.listen import add_insecure_option
from pdp.net.metrics_http import add_metrics_options
from pdp.options import embedded_settings, with_config

EXIT_DRIFT = 3


def cmd_audit_cluster(args: argparse.Namespace) -> int:
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from pdp.engine.wasm import WasmEngine
    from pdp.oneshot import cached_bundle
    from pdp.point import DecisionPoint
    from pdp.substrate.kubernetes.enforcement.pod_audit import audit

    if args.in_cluster:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        api = k8s.ApiClient()
    elif args.kubeconfig:
        api = k8s_config.new_client_from_config(config_file=str(args.kubeconfig))  # type: ignore[no-untyped-call]
    else:
        print("error: --kubeconfig PATH or --in-cluster: which cluster to audit", file=sys.stderr)
        return 2
    bundle, _ = cached_bundle(embedded_settings(args).replace(decision_log=None))
    if args.every:
        return _periodic(args, api, bundle)
    with WasmEngine(bundle, instances=1) as engine:
        audited, findings = audit(api, DecisionPoint(engine))
    _print(args, bundle.revision, audited, findings)
    return EXIT_DRIFT if findings else 0


def _periodic(args: argparse.Namespace, api: Any, bundle: Any) -> int:
    """`--every SECONDS`: audit again and again, the findings as metrics (--metrics-listen) and
    printed, until SIGTERM/SIGINT."""
    import signal
    import threading

    from pdp.engine.wasm import WasmEngine
    from pdp.net.metrics_http import check_metrics_options, start_metrics
    from pdp.point import DecisionPoint
    from pdp.substrate.kubernetes.enforcement.pod_audit import audit

    if args.every < 1:
        print(f"error: --every {args.every:g}: at least 1 second", file=sys.stderr)
        return 2
    check_metrics_options(args)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    listener = start_metrics(args)
    try:
        with WasmEngine(bundle, instances=1) as engine:
            point = DecisionPoint(engine)
            while not stop.is_set():
                try:
                    audited, findings = audit(api, point)
                    _print(args, bundle.revision, audited, findings)
                except Exception as exc:  # the API server away for a while: try again next round
                    print(f"error: cluster audit failed: {exc}", file=sys.stderr, flush=True)
                stop.wait(args.every)
    finally:
        if listener is not None:
            listener.stop()
    return 0


def _print(args: argparse.Namespace, revision: str, audited: int, findings: list[Any]) -> None:
    if args.json:
        doc = {"revision": revision, "audited": audited, "findings": [f.as_json() for f in findings]}
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"revision {revision}: {audited} running GPU pod(s) audited, {len(findings)} finding(s)")
        for f in findings:
            print(
                f"{f.finding.upper():9} {f.namespace}/{f.pod} on {f.node} "
                f"(tenant {f.tenant or '-'}): {f.reasons}"
            )
    sys.stdout.flush()


def add_parser(sub: Any) -> None:
    a = with_config(
        sub.add_parser(
            "audit-cluster",
            help="list running GPU pods the current policy would refuse or place on another node",
        ),
        engine_default="wasm",
    )
    a.add_argument("--kubeconfig", type=Path, help="the cluster to audit")
    a.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    a.add_argument("--json", action="store_true")
    a.add_argument(
        "--every",
        type=float,
        default=0,
        metavar="SECONDS",
        help="audit periodically until stopped, findings as gpupaas_pdp_drift_* metrics (--metrics-listen)",
    )
    add_metrics_options(a)
    add_insecure_option(a)
    a.set_defaults(func=cmd_audit_cluster)

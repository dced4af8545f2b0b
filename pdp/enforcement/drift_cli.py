"""`pdp audit-cluster`: the running GPU pods the current policy revision would refuse or place
elsewhere (pdp/enforcement/drift.py); exit 3 when there are any."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pdp.options import embedded_settings, with_config

EXIT_DRIFT = 3


def cmd_audit_cluster(args: argparse.Namespace) -> int:
    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    from pdp.enforcement.drift import audit
    from pdp.engine.wasm import WasmEngine
    from pdp.oneshot import cached_bundle
    from pdp.point import DecisionPoint

    if args.in_cluster:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        api = k8s.ApiClient()
    elif args.kubeconfig:
        api = k8s_config.new_client_from_config(config_file=str(args.kubeconfig))  # type: ignore[no-untyped-call]
    else:
        print("error: --kubeconfig PATH or --in-cluster: which cluster to audit", file=sys.stderr)
        return 2
    bundle, _ = cached_bundle(embedded_settings(args).replace(decision_log=None))
    with WasmEngine(bundle, instances=1) as engine:
        audited, findings = audit(api, DecisionPoint(engine))
    if args.json:
        doc = {"revision": bundle.revision, "audited": audited, "findings": [f.as_json() for f in findings]}
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"revision {bundle.revision}: {audited} running GPU pod(s) audited, {len(findings)} finding(s)")
        for f in findings:
            print(
                f"{f.finding.upper():9} {f.namespace}/{f.pod} on {f.node} "
                f"(tenant {f.tenant or '-'}): {f.reasons}"
            )
    return EXIT_DRIFT if findings else 0


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
    a.set_defaults(func=cmd_audit_cluster)

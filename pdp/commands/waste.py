"""`pdp waste`: GPU-hours wasted per tenant, deployment and pool, read from Prometheus.

With --reclaim, the idle deployments are listed as the reclaims they would start; with --confirm
too, they are started through the lifecycle API (pdp/commands/waste_reclaim.py).

Exit status: 0 the report was made (whether or not anything is wasted), 1 Prometheus could not
answer or the lifecycle worker refused a reclaim, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pdp.commands import waste_reclaim
from pdp.opa.binary import PROJECT_ROOT

if TYPE_CHECKING:
    from pdp.telemetry.waste import WasteReport


def add_parsers(sub: Any) -> None:
    w = sub.add_parser("waste", help="GPUs allocated but idle: GPU-hours wasted per tenant (from Prometheus)")
    w.add_argument(
        "--prometheus", required=True, metavar="URL", help="Prometheus HTTP API, e.g. http://127.0.0.1:9090"
    )
    w.add_argument("--prometheus-ca", type=Path, help="PEM CA bundle that signed an https Prometheus")
    w.add_argument(
        "--tenants",
        type=Path,
        default=PROJECT_ROOT / "examples" / "tenants",
        help="a tenant document or a folder of them",
    )
    w.add_argument("--fleet", type=Path, default=PROJECT_ROOT / "examples" / "fleet.yaml")
    w.add_argument("--window", default="1h", help="look back this far (Prometheus duration; default 1h)")
    w.add_argument("--step", default="1m", help="resolution of the GPU-hours count (default 1m)")
    w.add_argument(
        "--max-utilization", type=float, default=5.0, help="idle below this GPU utilization, %% (default 5)"
    )
    w.add_argument(
        "--max-memory-mib",
        type=float,
        default=1024.0,
        help="idle below this framebuffer use, MiB (default 1024)",
    )
    w.add_argument("--format", choices=("table", "json"), default="table")
    w.add_argument(
        "--metrics-file",
        type=Path,
        help="also write the report as Prometheus metrics (textfile collector format)",
    )
    w.add_argument("--timeout", type=float, default=10.0, help="seconds per Prometheus query (default 10)")
    waste_reclaim.add_arguments(w)
    w.set_defaults(func=cmd_waste)


def cmd_waste(args: argparse.Namespace) -> int:
    # Imported here: every other pdp command (pdp decide's one-shot cost) would pay for httpx.
    from pdp.config import load_config
    from pdp.telemetry.prometheus import PrometheusClient, PrometheusError
    from pdp.telemetry.waste import Thresholds, waste_report

    try:
        thresholds = Thresholds(args.window, args.step, args.max_utilization, args.max_memory_mib)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if (args.confirm or args.consent) and not args.reclaim:
        print("error: --confirm and --consent go with --reclaim", file=sys.stderr)
        return 2
    config = load_config(args.tenants, args.fleet)
    verify: bool | str = str(args.prometheus_ca) if args.prometheus_ca else True
    try:
        with PrometheusClient(args.prometheus, timeout=args.timeout, verify=verify) as prometheus:
            report = waste_report(prometheus, config.tenants, config.fleet, thresholds)
    except PrometheusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.metrics_file:
        write_metrics(report, args.metrics_file)
    reclaim: dict[str, Any] | None = None
    if args.reclaim:
        found = waste_reclaim.findings(report, config.tenants)
        reclaim = {"dry_run": True, "findings": found, "started": [], "skipped": []}
        if args.confirm and found:
            try:
                reclaim = waste_reclaim.start(args, report, found)
            except waste_reclaim.ReclaimRefused as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
    if args.format == "json":
        doc = report.as_json()
        if reclaim is not None:
            doc["reclaim"] = reclaim
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(table(report))
        if reclaim is not None:
            sys.stdout.write(waste_reclaim.table(reclaim))
    return 0


def table(report: WasteReport) -> str:
    t = report.thresholds
    lines = [
        f"GPUs allocated but idle over the last {t.window} (utilization < {t.max_utilization:g}%, "
        f"memory < {t.max_memory_mib:g} MiB; GPU-hours sampled every {t.step})",
        "",
        f"{'TENANT':<28} {'GPU-HOURS WASTED':>16} {'IDLE GPUS NOW':>13}  DEPLOYMENTS IDLE",
    ]
    tenants = report.per_tenant()
    for tenant, entry in tenants.items():
        deployments = ", ".join(entry["deployments"]) or "-"
        lines.append(
            f"{tenant:<28} {entry['wasted_gpu_hours']:>16.3f} {entry['idle_gpus']:>13}  {deployments}"
        )
    if not tenants:
        lines.append("(no allocated GPU reported by DCGM in this window)")
    lines += ["", f"{'POOL':<28} {'GPU-HOURS WASTED':>16} {'IDLE GPUS NOW':>13}"]
    for (pool,), entry in report.per("pool").items():
        lines.append(f"{pool:<28} {entry['wasted_gpu_hours']:>16.3f} {int(entry['idle_gpus']):>13}")
    return "\n".join(lines) + "\n"


def write_metrics(report: WasteReport, path: Path) -> None:
    """The report as gauges, for node_exporter's textfile collector (written whole, then renamed)."""
    from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

    from pdp.telemetry.waste import duration_seconds

    registry = CollectorRegistry()
    hours = Gauge(
        "gpupaas_pdp_waste_gpu_hours",
        "GPU-hours allocated but idle within the report's window",
        ["tenant", "pool"],
        registry=registry,
    )
    idle = Gauge(
        "gpupaas_pdp_waste_idle_gpus",
        "Allocated GPUs idle over the report's window",
        ["tenant", "pool"],
        registry=registry,
    )
    window = Gauge("gpupaas_pdp_waste_window_seconds", "The report's window", registry=registry)
    made = Gauge("gpupaas_pdp_waste_report_timestamp_seconds", "When the report was made", registry=registry)
    for (tenant, pool), entry in report.per("tenant", "pool").items():
        hours.labels(tenant, pool).set(entry["wasted_gpu_hours"])
        idle.labels(tenant, pool).set(entry["idle_gpus"])
    window.set(duration_seconds(report.thresholds.window))
    made.set(time.time())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry)
    os.chmod(path, 0o600)  # tenant names and their waste are an operator's data

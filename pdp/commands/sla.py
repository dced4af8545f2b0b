"""`pdp sla`: measured p99 latency and availability per tenant and deployment against each tenant's
SLA, with error-budget burn rates and the multi-window alerts they raise, read from Prometheus.
`pdp sla <piece>` runs one of the pieces below instead (`pdp sla rules`: the same alerts as a
Prometheus rule file).

Exit status of the report: 0 no alert fires, 3 an SLA burns its error budget (an alert fires),
1 Prometheus could not answer, 2 usage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pdp.opa.binary import PROJECT_ROOT

if TYPE_CHECKING:
    from pdp.telemetry.sla import SlaReport

BREACHED = 3

# `pdp sla <piece>`: piece -> the module whose add_parser(subparsers) adds it.
PIECES = {
    "rules": "pdp.commands.sla_rules",
}


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("sla", help="measured p99 latency, availability and error-budget burn per deployment")
    s.add_argument(
        "--prometheus",
        metavar="URL",
        help="Prometheus HTTP API, e.g. http://127.0.0.1:9090 (required for the report)",
    )
    s.add_argument("--prometheus-ca", type=Path, help="PEM CA bundle that signed an https Prometheus")
    s.add_argument(
        "--tenants",
        type=Path,
        default=PROJECT_ROOT / "examples" / "tenants",
        help="a tenant document or a folder of them",
    )
    s.add_argument("--fleet", type=Path, default=PROJECT_ROOT / "examples" / "fleet.yaml")
    add_window_options(s)
    s.add_argument("--format", choices=("table", "json"), default="table")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds per Prometheus query (default 10)")
    s.set_defaults(func=cmd_sla)
    pieces = s.add_subparsers(dest="sla_piece", metavar="{" + ",".join(PIECES) + "}")
    for module in PIECES.values():
        importlib.import_module(module).add_parser(pieces)


def add_window_options(parser: argparse.ArgumentParser) -> None:
    """The alert windows (Google SRE workbook defaults)."""
    parser.add_argument("--fast-long", default="1h", help="fast alert's long window (default 1h)")
    parser.add_argument("--fast-short", default="5m", help="fast alert's short window (default 5m)")
    parser.add_argument("--fast-burn", type=float, default=14.4, help="fast alert's burn rate (default 14.4)")
    parser.add_argument("--slow-long", default="6h", help="slow alert's long window (default 6h)")
    parser.add_argument("--slow-short", default="30m", help="slow alert's short window (default 30m)")
    parser.add_argument("--slow-burn", type=float, default=6.0, help="slow alert's burn rate (default 6)")
    parser.add_argument("--period", default="30d", help="the SLO period of the budget (default 30d)")


def cmd_sla(args: argparse.Namespace) -> int:
    from pdp.config import load_config
    from pdp.telemetry.prometheus import PrometheusClient, PrometheusError
    from pdp.telemetry.sla import Windows, sla_report

    if not args.prometheus:
        print("error: pdp sla: the report needs --prometheus URL", file=sys.stderr)
        return 2
    try:
        windows = Windows(
            args.fast_long, args.fast_short, args.fast_burn, args.slow_long, args.slow_short, args.slow_burn,
            args.period,
        )  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = load_config(args.tenants, args.fleet)
    verify: bool | str = str(args.prometheus_ca) if args.prometheus_ca else True
    try:
        with PrometheusClient(args.prometheus, timeout=args.timeout, verify=verify) as prometheus:
            report = sla_report(prometheus, config.tenants, windows)
    except PrometheusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        json.dump(report.as_json(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(table(report))
    return BREACHED if report.breaches() else 0


def _num(value: float | None, fmt: str) -> str:
    """`value` formatted, or a dash as wide (the format's width leads it: '8.0f')."""
    return format(value, fmt) if value is not None else "-".rjust(int(fmt.split(".")[0]))


def table(report: SlaReport) -> str:
    w = report.windows
    lines = [
        f"SLAs measured from vLLM metrics: p99 over {w.fast_short}, availability over {w.fast_long}; "
        f"alerts fast {w.fast_long}/{w.fast_short} > {w.fast_burn:g}x, slow {w.slow_long}/{w.slow_short} "
        f"> {w.slow_burn:g}x; budget over {w.period}",
        "",
        f"{'TENANT':<20} {'DEPLOYMENT':<18} {'P99 MS':>8} {'SLA MS':>7} {'AVAIL %':>9} {'SLA %':>7} "
        f"{'BURN LAT':>9} {'BURN AV':>8} {'BUDGET LEFT':>11}  ALERTS",
    ]
    for row in report.rows:
        o = row.objective
        burn_lat = row.burn.get("latency", {}).get(w.fast_long)
        burn_av = row.burn.get("availability", {}).get(w.fast_long)
        left = [v for v in row.budget_left.values() if v is not None]
        alerts = ", ".join(f"{a['objective']} {a['severity']} {a['burn_rate_long']:.1f}x" for a in row.alerts)
        lines.append(
            f"{row.tenant:<20} {row.deployment:<18} {_num(row.p99_ms, '8.0f')} "
            f"{_num(o.latency_p99_ms, '7.0f')} "
            f"{_num(row.availability, '9.3f')} {_num(o.availability, '7.2f')} {_num(burn_lat, '9.2f')} "
            f"{_num(burn_av, '8.2f')} {_num(min(left) if left else None, '11.1%')}  {alerts or '-'}"
        )
    if not report.rows:
        lines.append("(no model server reported requests in these windows)")
    return "\n".join(lines) + "\n"

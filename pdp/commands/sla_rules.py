"""`pdp sla rules`: the tenants' SLAs as a Prometheus rule file (recording rules for the bad
fractions, multi-window multi-burn-rate alerting rules), with the fleet's `sla_alerting` windows:
the alerts `pdp sla` and the lifecycle's check compute, for Prometheus to evaluate and Alertmanager
to page on (pdp/telemetry/sla_rules.py).

Exit status: 0 written, 1 a document or a window the rules cannot be written from (named), or
the file cannot be written.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from pdp.opa.binary import PROJECT_ROOT


def add_parser(sub: Any) -> None:
    r = sub.add_parser(
        "rules",
        help="the SLAs' burn-rate alerts as a Prometheus rule file (recording and alerting rules)",
        description="Writes the tenants' SLAs as a Prometheus rule file: recording rules for the bad "
        "fractions per window, and the fast and slow burn-rate alerts of pdp sla, with the fleet's "
        "sla_alerting.",
    )
    r.add_argument(
        "--tenants",
        type=Path,
        default=PROJECT_ROOT / "examples" / "tenants",
        help="a tenant document or a folder of them",
    )
    r.add_argument(
        "--fleet",
        type=Path,
        default=PROJECT_ROOT / "examples" / "fleet.yaml",
        help="the fleet: its sla_alerting sets the windows and burn rates (SRE workbook defaults)",
    )
    r.add_argument("-o", "--output", type=Path, help="write the rule file here (default: standard output)")
    r.set_defaults(func=cmd_rules)


def cmd_rules(args: argparse.Namespace) -> int:
    from pdp.config import load_config
    from pdp.telemetry.sla import fleet_windows
    from pdp.telemetry.sla_rules import render

    config = load_config(args.tenants, args.fleet)
    try:
        text = render(config.tenants, fleet_windows(config.fleet))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        write(args.output, text)
    except OSError as exc:
        print(f"error: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def write(path: Path, text: str) -> None:
    """Replaces `path` whole: a Prometheus reloading meanwhile reads the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)  # read by Prometheus, which may run as another user; it holds no secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

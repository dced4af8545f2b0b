"""`pdp status`: the bundle revision each PDP decides on, and the skew between them.

Each PDP exports the revision its engine has active as `gpupaas_pdp_bundle_info{revision}` on its
metrics listener (--metrics-listen; kept on the engine's active revision even when no decision
was made since it changed: pdp/opa/status.py). `pdp status` scrapes every PDP named, prints one
line each and the skew (how many distinct revisions beyond one), and exits 0 when every PDP
answered on one revision, 1 on skew, 2 when a PDP could not be read. `--format prometheus` writes
the same as metrics (`gpupaas_pdp_fleet_revision_skew`, ...) for a textfile collector or a
CronJob pushing them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

INFO = "gpupaas_pdp_bundle_info"
AGE = "gpupaas_pdp_bundle_age_seconds"


@dataclass(frozen=True)
class PdpRevision:
    pdp: str
    revision: str = ""
    age_seconds: float | None = None
    error: str = ""


def read_revision(text: str, pdp: str) -> PdpRevision:
    """The active revision in one PDP's metrics exposition (pure)."""
    from prometheus_client.parser import text_string_to_metric_families

    revisions: list[str] = []
    age: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == INFO and sample.value == 1:
                revisions.append(sample.labels.get("revision", ""))
            elif sample.name == AGE:
                age = float(sample.value)
    if len(revisions) != 1:
        problem = "no active revision yet" if not revisions else f"several revisions {sorted(revisions)}"
        return PdpRevision(pdp, error=f"{INFO}: {problem}")
    return PdpRevision(pdp, revisions[0], age)


def scrape(url: str, ca: Path | None, timeout: float) -> PdpRevision:
    import httpx

    try:
        response = httpx.get(url, timeout=timeout, verify=str(ca) if ca else True)
    except httpx.HTTPError as exc:
        return PdpRevision(url, error=f"unreachable: {type(exc).__name__}: {exc}")
    if response.status_code != 200:
        return PdpRevision(url, error=f"HTTP {response.status_code} from the metrics listener")
    try:
        return read_revision(response.text, url)
    except ValueError as exc:
        return PdpRevision(url, error=f"not a metrics exposition: {exc}")


def summary(found: list[PdpRevision]) -> dict[str, Any]:
    """Revisions and how many PDPs are on each, and the skew: distinct revisions beyond one (pure)."""
    on: dict[str, list[str]] = {}
    for f in found:
        if f.revision:
            on.setdefault(f.revision, []).append(f.pdp)
    return {
        "pdps": [asdict(f) for f in found],
        "revisions": {r: sorted(p) for r, p in sorted(on.items())},
        "skew": max(0, len(on) - 1),
        "unreadable": sorted(f.pdp for f in found if f.error),
    }


def prometheus(report: dict[str, Any]) -> str:
    lines = [
        "# HELP gpupaas_pdp_fleet_revision_skew Distinct bundle revisions among the PDPs read, beyond one.",
        "# TYPE gpupaas_pdp_fleet_revision_skew gauge",
        f"gpupaas_pdp_fleet_revision_skew {report['skew']}",
        "# HELP gpupaas_pdp_fleet_revision_pdps PDPs deciding on each bundle revision.",
        "# TYPE gpupaas_pdp_fleet_revision_pdps gauge",
        *(
            f'gpupaas_pdp_fleet_revision_pdps{{revision="{r}"}} {len(p)}'
            for r, p in report["revisions"].items()
        ),
        "# HELP gpupaas_pdp_fleet_unreadable PDPs whose active revision could not be read.",
        "# TYPE gpupaas_pdp_fleet_unreadable gauge",
        f"gpupaas_pdp_fleet_unreadable {len(report['unreadable'])}",
    ]
    return "\n".join(lines) + "\n"


def text(report: dict[str, Any]) -> str:
    width = max(len(p["pdp"]) for p in report["pdps"])
    out = []
    for p in report["pdps"]:
        state = p["error"] or (
            f"{p['revision']}  (active {p['age_seconds']:.0f} s)"
            if p["age_seconds"] is not None
            else p["revision"]
        )
        out.append(f"{p['pdp']:<{width}}  {state}")
    if report["unreadable"]:
        verdict = f"{len(report['unreadable'])} PDP(s) unreadable"
    elif report["skew"]:
        verdict = f"REVISION SKEW: {len(report['revisions'])} revisions among {len(report['pdps'])} PDPs"
    else:
        verdict = f"one revision on all {len(report['pdps'])} PDPs"
    return "\n".join([*out, verdict]) + "\n"


def cmd_status(args: argparse.Namespace) -> int:
    found = [scrape(url, args.ca, args.timeout) for url in args.pdp]
    report = summary(found)
    if args.format == "json":
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    elif args.format == "prometheus":
        sys.stdout.write(prometheus(report))
    else:
        sys.stdout.write(text(report))
    if report["unreadable"]:
        return 2
    return 1 if report["skew"] else 0


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "status",
        help="the bundle revision each PDP decides on, and the skew between them",
        description="Reads each PDP's metrics listener (gpupaas_pdp_bundle_info). Exit 0: one "
        "revision everywhere; 1: revision skew; 2: a PDP could not be read.",
    )
    s.add_argument(
        "--pdp",
        action="append",
        required=True,
        metavar="URL",
        help="a PDP's metrics URL, e.g. https://pdp-0.eu-west:9464/metrics (repeat for each PDP)",
    )
    s.add_argument("--ca", type=Path, help="CA bundle the metrics listeners' certificates chain to")
    s.add_argument("--timeout", type=float, default=5.0, help="seconds per PDP")
    s.add_argument("--format", choices=("text", "json", "prometheus"), default="text")
    s.set_defaults(func=cmd_status)

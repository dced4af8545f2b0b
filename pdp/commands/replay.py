"""`pdp replay`: the impact of a candidate policy on recorded decisions, as a table or JSON, and a
CI gate (`--fail-on`)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from pdp.opa.binary import PROJECT_ROOT
from pdp.options import embedded_settings, with_config

EXIT_CHANGED = 3  # --fail-on matched: distinct from errors (1) and usage (2)


def _time(value: str, flag: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise SystemExit(f"error: {flag}: expected an ISO 8601 time with zone, not {value!r}") from None
    if moment.tzinfo is None:
        raise SystemExit(f"error: {flag}: {value!r} has no zone (add Z or +00:00)")
    return moment


def cmd_replay(args: argparse.Namespace) -> int:
    from pdp.replay import report as render
    from pdp.replay.compare import Report

    try:
        fail_on = render.parse_fail_on(args.fail_on) if args.fail_on else []
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.shadow_log:
        report = _from_shadow_log(args.shadow_log, Report(candidate=f"shadow log {args.shadow_log}"))
    else:
        if not args.candidate:
            print("error: --candidate: give a git ref, a bundle file or a policy folder", file=sys.stderr)
            return 2
        outcome = _replay(args)
        if isinstance(outcome, int):
            return outcome
        report = outcome
    (render.write_json if args.json else render.write_table)(report, sys.stdout)
    failing = report.failing(fail_on)
    if failing:
        print(
            f"FAIL --fail-on: {', '.join(f'{k} {report.counts[k]}' for k in failing)}",
            file=sys.stderr,
        )
        return EXIT_CHANGED
    return 0


def _from_shadow_log(path: Path, report: Any) -> Any:
    from pdp.replay.report import read_changes

    try:
        with path.open() as lines:
            changes = read_changes(lines)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: --shadow-log {path}: {exc}") from exc
    for change in changes:
        report.add(change)
    report.selected = report.replayed = len(changes)
    report.candidate_revision = changes[-1].candidate.revision if changes else ""
    return report


def _replay(args: argparse.Namespace) -> Any:
    from pdp.records.postgres import RecordsStoreError, is_url
    from pdp.replay.candidate import CandidateError, load_candidate
    from pdp.replay.run import replay
    from pdp.replay.source import Selection, recorded

    selection = Selection(
        since=_time(args.since, "--since") if args.since else None,
        until=_time(args.until, "--until") if args.until else None,
        tenant=args.tenant,
        kind=args.kind,
    )
    source: Path | str = args.records or str(args.state / "decisions.sqlite")
    if not (isinstance(source, str) and is_url(source)):
        source = Path(source)
    try:
        candidate = load_candidate(args.candidate, embedded_settings(args), repo=args.repo)
        return replay(
            recorded(source, selection),
            candidate.bundle,
            description=candidate.description,
            batch=args.batch,
            keep=args.keep,
        )
    except (CandidateError, RecordsStoreError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def add_parser(sub: Any) -> None:
    r = with_config(
        sub.add_parser(
            "replay",
            help="decide recorded intents again on a candidate policy and report what would change",
        ),
        engine_default="wasm",
    )
    r.add_argument(
        "--candidate",
        metavar="REF|BUNDLE|DIR",
        help="a git ref of --repo (its policies/), a wasm bundle file, or a folder of policies",
    )
    r.add_argument("--repo", type=Path, default=PROJECT_ROOT, help="the git repository of a ref")
    r.add_argument(
        "--records",
        metavar="PATH|URL",
        default=os.environ.get("PDP_RECORDS_URL", ""),
        help="the decision log: a SQLite file or postgresql://... central records "
        "(default $PDP_RECORDS_URL, else <state>/decisions.sqlite)",
    )
    r.add_argument("--since", help="ISO 8601 time with zone, inclusive")
    r.add_argument("--until", help="ISO 8601 time with zone, exclusive")
    r.add_argument("--tenant")
    r.add_argument("--kind", help="intent kind (deploy_model, place_workload, ...)")
    r.add_argument(
        "--fail-on",
        metavar="KINDS",
        default="",
        help="exit 3 when any decision changes this way: allow-to-deny, deny-to-allow, outcome, "
        "reasons, constraints (comma-separated, or any)",
    )
    r.add_argument("--json", action="store_true", help="the report as JSON")
    r.add_argument("--batch", type=int, default=256, help="intents per engine evaluation")
    r.add_argument("--keep", type=int, default=1000, help="changed decisions listed one by one")
    r.add_argument(
        "--shadow-log",
        type=Path,
        help="report the disagreements a shadow evaluator wrote (pdp serve --shadow-log) instead",
    )
    r.set_defaults(func=cmd_replay)

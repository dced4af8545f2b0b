"""`pdp records`: the decision log as JSON lines, `verify` against outside trust, `public-key`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from pdp.opa.binary import STATE_ROOT
from pdp.options import with_verify
from pdp.records.model import RecordsStoreError, is_url


def _log_path(args: argparse.Namespace) -> Path:
    return Path(args.log or args.state / "decisions.sqlite")


def _central(args: argparse.Namespace) -> str:
    """The central records' URL, '' for the local log; SystemExit naming a URL of another kind."""
    url = str(getattr(args, "records_url", "") or "")
    if url and not is_url(url):
        raise SystemExit(
            f"error: --records-url: expected postgresql://user@host/db, not {url.split('@')[-1]!r}"
        )
    return url


def cmd_records(args: argparse.Namespace) -> int:
    from pdp.records.read import read_records

    since = datetime.fromisoformat(args.since) if args.since else None
    until = datetime.fromisoformat(args.until) if args.until else None
    source: Path | str = _central(args) or _log_path(args)
    if isinstance(source, Path) and not source.exists():
        print(f"error: no decision log at {source}", file=sys.stderr)
        return 1
    try:
        found = read_records(
            source, tenant=args.tenant, since=since, until=until, limit=args.limit, writer=args.writer
        )
    except RecordsStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for record in found:
        print(json.dumps(record.to_dict()))
    return 0


def _verify_central(url: str, held: Any, as_json: bool) -> int:
    from pdp.integrity import trust
    from pdp.records.read import verify_central

    try:
        reports = verify_central(url, held.sink, held.key)
    except RecordsStoreError as exc:
        print(f"FAIL {exc}")
        return 1
    ok = all(r.ok for r in reports.values())
    if as_json:
        doc = {"ok": ok, "writers": {w: r.as_json() for w, r in reports.items()}}
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0 if ok else 1
    if not reports:
        print(f"ok: no decision records and no checkpoints of any writer in {held.sink.location}")
    for writer, report in reports.items():
        print(f"== writer {writer}")
        trust.print_report(report, what=f"decision log of writer {writer}", sink=held.sink, key=held.key)
    if reports:
        bad = sorted(w for w, r in reports.items() if not r.ok)
        print(
            f"{'FAIL' if bad else 'ok'}: {len(reports) - len(bad)} of {len(reports)} writers verify"
            + (f"; failing: {', '.join(bad)}" if bad else "")
        )
    return 0 if ok else 1


def cmd_verify(args: argparse.Namespace) -> int:
    from pdp.integrity import trust
    from pdp.integrity.sinks import SinkError, default_sink
    from pdp.records.log import RECORDS_OPTION, default_checkpoints
    from pdp.records.read import verify_log

    log = _log_path(args)
    try:
        default = default_sink(log.parent, default_checkpoints(log), RECORDS_OPTION, create=False)
    except SinkError:
        default = ""  # the writer had no default sink either: it was given one
    try:
        # The log's own folder is the state folder that must not hold the trust.
        held = trust.load(log.parent, args.checkpoints, args.trusted_key, env="PDP_RECORDS", default=default)
    except trust.TrustError as exc:
        print(f"FAIL {exc}")
        return 1
    url = _central(args)
    if url:
        return _verify_central(url, held, args.json)
    report = verify_log(_log_path(args), held.sink, held.key)
    return trust.print_report(report, what="decision log", sink=held.sink, key=held.key, as_json=args.json)


def cmd_public_key(args: argparse.Namespace) -> int:
    from pdp.integrity import signing
    from pdp.records.log import SIGNING_KEY

    path = args.signing_key or args.state / SIGNING_KEY
    try:
        key = signing.load_key(path)
    except (OSError, ValueError, signing.KeyFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(signing.public_pem(key.public_key()))
    return 0


def add_parser(sub: Any) -> None:
    default_state = STATE_ROOT / "var"
    r = sub.add_parser("records", help="decision records as JSON lines; `records verify` checks the log")
    r.add_argument("--state", type=Path, default=default_state)
    r.add_argument("--log", type=Path, help="the decision log (default: <state>/decisions.sqlite)")
    r.add_argument("--tenant")
    r.add_argument("--since", help="ISO 8601 time with zone, inclusive")
    r.add_argument("--until", help="ISO 8601 time with zone, exclusive")
    r.add_argument("--limit", type=int, default=1000)
    r.add_argument("--writer", help="central records: only this writer's (default: every writer's)")
    r.set_defaults(func=cmd_records)
    rsub = r.add_subparsers(dest="records_command")

    def central(sp: argparse.ArgumentParser, default: Any) -> None:
        sp.add_argument(
            "--records-url",
            "--database-url",
            dest="records_url",
            metavar="URL",
            default=default,
            help="central records of PDP replicas, postgresql://user@host/db, queried across writers "
            "(default $PDP_RECORDS_URL, else the SQLite log)",
        )

    central(r, os.environ.get("PDP_RECORDS_URL", ""))

    def located(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        # SUPPRESS: given before the subcommand (`records --state S verify`) the value stays.
        sp.add_argument("--state", type=Path, default=argparse.SUPPRESS, help="default: var/")
        sp.add_argument(
            "--log", type=Path, default=argparse.SUPPRESS, help="default: <state>/decisions.sqlite"
        )
        central(sp, argparse.SUPPRESS)
        return sp

    v = located(
        rsub.add_parser(
            "verify",
            help="check the decision log against its checkpoints and the trusted key, both held outside "
            "the state folder; names the first altered record",
        )
    )
    with_verify(v, env="PDP_RECORDS", writer="PDP", public_key="pdp records public-key")
    v.set_defaults(func=cmd_verify)
    k = rsub.add_parser(
        "public-key",
        help="print the public half of the records signing key, to keep outside the state folder",
    )
    k.add_argument("--state", type=Path, default=argparse.SUPPRESS, help="default: var/")
    k.add_argument("--signing-key", type=Path, help="default: <state>/records-signing-key.pem")
    k.set_defaults(func=cmd_public_key)

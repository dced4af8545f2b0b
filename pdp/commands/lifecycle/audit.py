"""`pdp lifecycle audit-verify`, `audit-export`, `audit-public-key`: they read the lifecycle
database directly, so they work with the worker down (docs/records.md)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pdp.options import with_verify


def lifecycle_db(args: argparse.Namespace) -> Any:
    """The lifecycle database the options name (--database-url, else SQLite under --state)."""
    from pdp.lifecycle.storage.db import Database

    url = args.database_url or os.environ.get("PDP_LIFECYCLE_DATABASE_URL", "")
    return Database(url or f"sqlite:///{args.state / 'lifecycle' / 'lifecycle.sqlite'}")


def _signing_key_path(args: argparse.Namespace) -> Path:
    return Path(args.certificate_key or args.state / "lifecycle" / "certificate-signing-key.pem")


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from pdp.integrity import signing, trust
    from pdp.integrity.sinks import SinkError, default_sink, open_sink
    from pdp.lifecycle.storage import anchor

    if args.file:
        # An archive: the trusted key is required; the sink, when given, checks every record.
        if not args.trusted_key:
            print("FAIL no trusted key: give --trusted-key PEM (or $PDP_AUDIT_TRUSTED_KEY)")
            return 1
        try:
            public = signing.load_public_key(args.trusted_key)
            sink = open_sink(args.checkpoints) if args.checkpoints else None
        except (OSError, SinkError, signing.KeyFileError) as exc:
            print(f"FAIL {exc}")
            return 1
        entries = list(sink.entries()) if sink is not None else None
        report = anchor.verify_export(Path(args.file).read_text(), public, entries)
        shown = sink or open_sink(f"file:{args.file}")
        return trust.print_report(report, what="audit trail", sink=shown, key=public)
    try:
        default = default_sink(args.state, anchor.AUDIT_CHECKPOINTS, anchor.AUDIT_OPTION, create=False)
    except SinkError:
        default = ""  # the worker had no default sink either: it was given one
    try:
        held = trust.load(args.state, args.checkpoints, args.trusted_key, env="PDP_AUDIT", default=default)
    except trust.TrustError as exc:
        print(f"FAIL {exc}")
        return 1
    report = anchor.verify(lifecycle_db(args), held.sink, held.key)
    return trust.print_report(report, what="audit trail", sink=held.sink, key=held.key, as_json=args.json)


def cmd_audit_export(args: argparse.Namespace) -> int:
    from pdp.lifecycle.services import certificate
    from pdp.lifecycle.storage.anchor import export_jsonl

    try:
        key = certificate.load_key(_signing_key_path(args))
    except (OSError, ValueError, certificate.KeyFileError) as exc:
        key = None  # still exported, unsealed: a verifier will say deletions cannot be detected
        print(f"warning: export not sealed, no signing key: {exc}", file=sys.stderr)
    sys.stdout.write(export_jsonl(lifecycle_db(args), args.tenant, key))
    return 0


def cmd_audit_public_key(args: argparse.Namespace) -> int:
    from pdp.lifecycle.services import certificate

    try:
        key = certificate.load_key(_signing_key_path(args))
    except (OSError, ValueError, certificate.KeyFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(certificate.public_pem(key.public_key()))
    return 0


def add_parsers(lsub: Any, database: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    def signed(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument(
            "--certificate-key",
            type=Path,
            help="the worker's signing key (default: <state>/lifecycle/certificate-signing-key.pem)",
        )
        return sp

    av = database(
        lsub.add_parser(
            "audit-verify",
            help="check the audit trail against its checkpoints and the trusted key, both held outside "
            "the state folder; names the first altered record",
        )
    )
    with_verify(av, env="PDP_AUDIT", writer="worker", public_key="pdp lifecycle audit-public-key")
    av.add_argument("--file", type=Path, help="verify an exported trail (JSON lines) instead, offline")
    av.set_defaults(func=cmd_audit_verify)
    ae = signed(
        database(lsub.add_parser("audit-export", help="the audit trail as JSON lines, then its seal"))
    )
    ae.add_argument("--tenant")
    ae.set_defaults(func=cmd_audit_export)
    ak = signed(
        database(
            lsub.add_parser(
                "audit-public-key",
                help="print the public half of the worker's signing key, to keep outside the state folder",
            )
        )
    )
    ak.set_defaults(func=cmd_audit_public_key)

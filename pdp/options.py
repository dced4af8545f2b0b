"""The options every command that runs an embedded PDP shares (--tenants, --fleet, ...), and the
settings they make. Both `pdp` and `pdp lifecycle` import this; neither imports the other's CLI."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from pdp.integrity.sinks import CHECKPOINT_HOME_ENV, checkpoint_home
from pdp.opa.binary import PROJECT_ROOT, STATE_ROOT
from pdp.records.intents import IntentRetention
from pdp.records.log import Integrity
from pdp.settings import EmbeddedSettings


def with_config(sp: argparse.ArgumentParser, *, engine_default: str = "opa") -> argparse.ArgumentParser:
    sp.add_argument(
        "--tenants",
        type=Path,
        default=PROJECT_ROOT / "examples" / "tenants",
        help="a tenant document or a folder of them",
    )
    sp.add_argument("--fleet", type=Path, default=PROJECT_ROOT / "examples" / "fleet.yaml")
    sp.add_argument("--policies", type=Path, default=PROJECT_ROOT / "policies")
    sp.add_argument("--bundles", type=Path, default=STATE_ROOT / "bundles")
    sp.add_argument(
        "--keys",
        type=Path,
        default=STATE_ROOT / ".keys",
        help="folder of the bundle signing key pair (generated when missing)",
    )
    sp.add_argument(
        "--state",
        type=Path,
        default=STATE_ROOT / "var",
        help="folder for the decision log and OPA's files",
    )
    sp.add_argument(
        "--engine",
        choices=("opa", "wasm"),
        default=engine_default,
        help=f"opa: the supervised OPA sidecar; wasm: the same bundle compiled to WebAssembly and "
        f"evaluated in-process (default: {engine_default})",
    )
    return sp


def embedded_settings(args: argparse.Namespace, *, server: bool = False) -> EmbeddedSettings:
    """The embedded PDP's settings from the common options; `server`: for a process that serves
    decisions until stopped (records_integrity)."""
    return EmbeddedSettings.from_project(
        tenants=args.tenants,
        fleet=args.fleet,
        policies=args.policies,
        bundles=args.bundles,
        keys=args.keys,
        state=args.state,
        decision_log=args.state / "decisions.sqlite",
        engine=getattr(args, "engine", "opa"),
        opa_addr=getattr(args, "sidecar_addr", None) or "",
        records=records_integrity(args, server=server),
    )


def env_path(name: str) -> Path | None:
    """A path from the environment variable `name`, None when unset or empty."""
    value = os.environ.get(name, "")
    return Path(value) if value else None


def with_verify(sp: argparse.ArgumentParser, *, env: str, writer: str, public_key: str) -> None:
    """The options of a verify command (`records verify`, `lifecycle audit-verify`): the sink the
    writer checkpoints to and the public half of its signing key, both held outside the state
    folder it verifies (pdp/integrity/trust.py), from ${env}_CHECKPOINTS and ${env}_TRUSTED_KEY
    by default; and --json."""
    sp.add_argument(
        "--checkpoints",
        metavar="SINK",
        default=os.environ.get(f"{env}_CHECKPOINTS", ""),
        help=f"the sink the {writer} checkpoints to: file:PATH or dir:PATH (default ${env}_CHECKPOINTS, "
        f"else the {writer}'s default for --state under ${CHECKPOINT_HOME_ENV} or ~/.local/state/gpupaas)",
    )
    sp.add_argument(
        "--trusted-key",
        "--public-key",
        dest="trusted_key",
        type=Path,
        default=env_path(f"{env}_TRUSTED_KEY"),
        help=f"PEM public key of the {writer}'s signing key, as `{public_key}` prints it "
        f"(default ${env}_TRUSTED_KEY)",
    )
    sp.add_argument("--json", action="store_true", help="the report as JSON")


def with_records(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Where the decision log's signed checkpoints go and which key signs them (docs/records.md)."""
    g = sp.add_argument_group("decision log integrity (docs/records.md)")
    g.add_argument(
        "--records-checkpoints",
        metavar="SINK",
        default=os.environ.get("PDP_RECORDS_CHECKPOINTS", ""),
        help="where the decision log's signed checkpoints go, outside --state: file:PATH (an "
        "append-only file) or dir:PATH (write-once files) (default $PDP_RECORDS_CHECKPOINTS, else a "
        f"file kept for --state under ${CHECKPOINT_HOME_ENV}, else ~/.local/state/gpupaas/checkpoints)",
    )
    g.add_argument(
        "--records-signing-key",
        type=Path,
        default=env_path("PDP_RECORDS_SIGNING_KEY"),
        help="Ed25519 key signing the checkpoints, generated (0600) if absent "
        "(default $PDP_RECORDS_SIGNING_KEY, else <state>/records-signing-key.pem)",
    )
    g.add_argument(
        "--records-trusted-key",
        type=Path,
        default=env_path("PDP_RECORDS_TRUSTED_KEY"),
        help="the public key verifiers trust; a signing key that does not match it is refused at start "
        "(default $PDP_RECORDS_TRUSTED_KEY)",
    )
    g.add_argument(
        "--records-url",
        metavar="URL",
        default=os.environ.get("PDP_RECORDS_URL", ""),
        help="central decision records shared by PDP replicas: postgresql://user@host/db (default "
        "$PDP_RECORDS_URL, else the SQLite file <state>/decisions.sqlite)",
    )
    g.add_argument(
        "--records-writer",
        metavar="NAME",
        default=os.environ.get("PDP_RECORDS_WRITER", ""),
        help="this process's chain in central records; a name in use gets -2, -3... (default "
        "$PDP_RECORDS_WRITER, else the host name)",
    )
    g.add_argument(
        "--records-durable",
        action="store_true",
        default=os.environ.get("PDP_RECORDS_DURABLE", "") == "1",
        help="answer a decision only once its record is committed (else within ~20 ms after; "
        "docs/records.md, crash window)",
    )
    retention = _env_retention()
    g.add_argument(
        "--records-intent-max-bytes",
        type=int,
        default=retention.max_bytes,
        metavar="N",
        help="keep each decision's intent for `pdp replay` up to this size; a larger one keeps its "
        f"digest only and is counted (default $PDP_RECORDS_INTENT_MAX_BYTES, else {retention.max_bytes}; "
        "0: keep none)",
    )
    g.add_argument(
        "--records-intent-days",
        type=float,
        default=retention.max_days,
        metavar="DAYS",
        help="drop kept intents older than this (the records stay) (default $PDP_RECORDS_INTENT_DAYS, "
        f"else {retention.max_days:g}; 0: no age limit)",
    )
    g.add_argument(
        "--records-intent-count",
        type=int,
        default=retention.max_count,
        metavar="N",
        help="keep only the newest N intents (default $PDP_RECORDS_INTENT_COUNT, else "
        f"{retention.max_count}; 0: no count limit)",
    )
    g.add_argument(
        "--records-adopt",
        action="store_true",
        help="checkpoint a decision log anew although the sink holds none of its checkpoints",
    )
    return sp


def records_integrity(args: argparse.Namespace, *, server: bool = False) -> Integrity:
    """The decision log's options; `server`: a process that serves decisions until stopped, whose
    local log is committed by a child process (Integrity.commit_process)."""
    return Integrity(
        checkpoints=getattr(args, "records_checkpoints", "") or "",
        signing_key=getattr(args, "records_signing_key", None),
        trusted_key=getattr(args, "records_trusted_key", None),
        adopt=bool(getattr(args, "records_adopt", False)),
        url=getattr(args, "records_url", "") or "",
        writer=getattr(args, "records_writer", "") or "",
        durable=bool(getattr(args, "records_durable", False)),
        intents=intent_retention(args),
        commit_process=server,
    )


def _env_retention() -> IntentRetention:
    try:
        return IntentRetention.from_env()
    except ValueError as exc:  # names the variable
        raise SystemExit(f"error: {exc}") from None


def intent_retention(args: argparse.Namespace) -> IntentRetention:
    """The retention of kept intents from the options; a negative value names its flag."""
    base = _env_retention()
    values = {
        "max_bytes": getattr(args, "records_intent_max_bytes", base.max_bytes),
        "max_days": getattr(args, "records_intent_days", base.max_days),
        "max_count": getattr(args, "records_intent_count", base.max_count),
    }
    flags = {"max_bytes": "max-bytes", "max_days": "days", "max_count": "count"}
    for name, value in values.items():
        if value < 0:
            raise SystemExit(f"error: --records-intent-{flags[name]}: must be >= 0, not {value}")
    return IntentRetention(
        max_bytes=int(values["max_bytes"]),
        max_days=float(values["max_days"]),
        max_count=int(values["max_count"]),
    )


def records_argv(args: argparse.Namespace) -> tuple[str, ...]:
    """The same options for another process (`serve --workers`): the log's checkpoints and keys."""
    argv: list[str] = []
    for flag, value in (
        ("--records-checkpoints", getattr(args, "records_checkpoints", "")),
        ("--records-signing-key", getattr(args, "records_signing_key", None)),
        ("--records-trusted-key", getattr(args, "records_trusted_key", None)),
        ("--records-url", getattr(args, "records_url", "")),
        ("--records-writer", getattr(args, "records_writer", "")),
        ("--records-intent-max-bytes", getattr(args, "records_intent_max_bytes", None)),
        ("--records-intent-days", getattr(args, "records_intent_days", None)),
        ("--records-intent-count", getattr(args, "records_intent_count", None)),
    ):
        if value or (value == 0 and flag.startswith("--records-intent")):
            argv += [flag, str(value)]
    if getattr(args, "records_durable", False):
        argv.append("--records-durable")
    return tuple(argv)


def note_default_checkpoints(args: argparse.Namespace, log: logging.Logger) -> None:
    """A long-running server given no sink for its decision log says where its checkpoints went."""
    if not getattr(args, "records_checkpoints", ""):
        log.info(
            "decision log: checkpoints outside --state, under %s (the default); a sink this user can "
            "only append to (--records-checkpoints or $PDP_RECORDS_CHECKPOINTS) also keeps them from "
            "whoever can write as this user (docs/records.md)",
            checkpoint_home(),
        )


def configure_logging() -> None:
    """Warnings of every library and our own INFO records (certificate reloads, sidecar restarts,
    plaintext listeners) to stderr; libraries' per-request INFO lines (httpx) stay out."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pdp").setLevel(logging.INFO)

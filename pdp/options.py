"""The options every command that runs an embedded PDP shares (--tenants, --fleet, ...), and the
settings they make. Both `pdp` and `pdp lifecycle` import this; neither imports the other's CLI."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from pdp.embedded import EmbeddedSettings
from pdp.opa.binary import PROJECT_ROOT


def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sp.add_argument(
        "--tenants",
        type=Path,
        default=PROJECT_ROOT / "examples" / "tenants",
        help="a tenant document or a folder of them",
    )
    sp.add_argument("--fleet", type=Path, default=PROJECT_ROOT / "examples" / "fleet.yaml")
    sp.add_argument("--policies", type=Path, default=PROJECT_ROOT / "policies")
    sp.add_argument("--bundles", type=Path, default=PROJECT_ROOT / "bundles")
    sp.add_argument(
        "--keys",
        type=Path,
        default=PROJECT_ROOT / ".keys",
        help="folder of the bundle signing key pair (generated when missing)",
    )
    sp.add_argument(
        "--state",
        type=Path,
        default=PROJECT_ROOT / "var",
        help="folder for the decision log and OPA's files",
    )
    sp.add_argument(
        "--engine",
        choices=("opa", "wasm"),
        default="opa",
        help="opa: the supervised OPA sidecar (default); wasm: the same bundle compiled to "
        "WebAssembly and evaluated in-process",
    )
    return sp


def embedded_settings(args: argparse.Namespace) -> EmbeddedSettings:
    """The embedded PDP's settings from the common options."""
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
    )


def configure_logging() -> None:
    """Warnings of every library and our own INFO records (certificate reloads, sidecar restarts,
    plaintext listeners) to stderr; libraries' per-request INFO lines (httpx) stay out."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pdp").setLevel(logging.INFO)

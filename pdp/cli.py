"""`pdp`: validate tenant policy, build signed bundles, serve the PDP, and decide from scripts.

Exit status of `pdp decide` and `pdp check-plan`: 0 ALLOW, 1 DENY, 3 NEEDS_APPROVAL, 2 a malformed
intent (or plan) or usage.

Each group of subcommands lives in its own module of pdp/commands/ (`pdp lifecycle`: the folder
pdp/commands/lifecycle/). Only the group of the command being run is imported, so `pdp decide`
does not pay for gRPC servers, the lifecycle's web stack or the substrates.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from pdp.config import ConfigErrors

EXIT_USAGE = 2

# Command -> (module, the function that adds its group's parsers), in the order `pdp --help` lists.
_GROUPS: dict[str, tuple[str, str]] = {
    "validate": ("pdp.commands.bundles", "add_parsers"),
    "build": ("pdp.commands.bundles", "add_parsers"),
    "keygen": ("pdp.commands.bundles", "add_parsers"),
    "serve-bundles": ("pdp.commands.bundles", "add_parsers"),
    "publish-bundle": ("pdp.commands.publish", "add_parsers"),
    "serve": ("pdp.commands.serve", "add_parsers"),
    "serve-worker": ("pdp.commands.serve", "add_parsers"),
    "decide": ("pdp.commands.decide", "add_parsers"),
    "check-plan": ("pdp.commands.decide", "add_parsers"),
    "demo": ("pdp.commands.decide", "add_parsers"),
    "records": ("pdp.commands.records", "add_parser"),
    "status": ("pdp.commands.status", "add_parser"),
    "replay": ("pdp.commands.replay", "add_parser"),
    "audit-cluster": ("pdp.commands.audit_cluster", "add_parser"),
    "opa": ("pdp.commands.opa", "add_parser"),
    "lifecycle": ("pdp.commands.lifecycle.main", "add_parser"),
    "slurm": ("pdp.commands.slurm", "add_parser"),
    "kueue-controller": ("pdp.commands.kueue", "add_parser"),
    "kueue-objects": ("pdp.commands.kueue", "add_parser"),
    "waste": ("pdp.commands.waste", "add_parsers"),
    "sla": ("pdp.commands.sla", "add_parsers"),
}


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `pdp` parser: every command, or only the group of `command` when it names one."""
    p = argparse.ArgumentParser(prog="pdp", description=__doc__.splitlines()[0] if __doc__ else "")
    p.add_argument("--version", action="version", version=f"pdp {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    if command == "--version":
        groups = []  # it prints and exits: no command's module to import
    else:
        groups = [_GROUPS[command]] if command in _GROUPS else list(dict.fromkeys(_GROUPS.values()))
    for module, add in groups:
        getattr(importlib.import_module(module), add)(sub)
    return p


def _version() -> str:
    """The installed distribution's version (the wheel's, or the checkout's editable install)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gpupaas-pdp")
    except PackageNotFoundError:
        return "unknown (not installed: pip install the checkout or the wheel)"


class _NotRaised(Exception):
    """Stands for the errors of a module the command never imported (so never raised)."""


def _raised_by(module: str, *names: str) -> tuple[type[Exception], ...]:
    """The exception classes `names` of `module` if it is loaded. A command that did not import
    `module` cannot have raised its errors, and importing it only to catch them would cost the
    one-shot `pdp decide` what it saves by importing lazily (TLS certificates load x509)."""
    loaded = sys.modules.get(module)
    if loaded is None:
        return (_NotRaised,)
    return tuple(getattr(loaded, name) for name in names)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "serve":
        # Before the parser imports prometheus_client: its worker processes' metrics are exported
        # with its own (pdp/net/metrics_processes.py).
        from pdp.net.metrics_processes import share_between_processes

        share_between_processes()
    args = parser(argv[0] if argv else None).parse_args(argv)
    try:
        status: int = args.func(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader went away (`pdp decide ... | head`): nothing left to say to it. Python would
        # report the same error again when it flushes stdout at exit, so point stdout elsewhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130
    # `except` evaluates these after the command ran: the classes of modules it imported.
    except _raised_by("pdp.config", "ConfigErrors") as exc:
        for error in cast("ConfigErrors", exc).errors:
            print(f"error: {error}", file=sys.stderr)
        return 1
    except _raised_by("pdp.intents", "InvalidIntent") as exc:
        print(f"invalid intent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _raised_by("pdp.net.listen", "ListenError") as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (
        _raised_by("pdp.opa.binary", "OpaNotFound", "OpaCommandFailed")
        + _raised_by("pdp.net.servingcert", "CertificateError")
        + _raised_by("pdp.records.model", "RecordsStoreError")
        + _raised_by("pdp.integrity.sinks", "SinkError")
        + _raised_by("pdp.commands.decide", "ServerFailed")
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

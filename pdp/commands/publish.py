"""`pdp publish-bundle --oci REGISTRY/REPOSITORY:TAG`: the built, signed bundle pushed as the OCI
artifact OPA's `type: oci` services pull (pdp/bundles/oci.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pdp.commands.output import print_json
from pdp.opa.binary import STATE_ROOT

EXIT_USAGE = 2


def cmd_publish_bundle(args: argparse.Namespace) -> int:
    from pdp.bundles.oci import OciError, OciReference, push_bundle

    try:
        reference = OciReference.parse(args.oci)
    except ValueError as exc:
        print(f"pdp publish-bundle: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.bundle.is_file():
        print(f"pdp publish-bundle: --bundle {args.bundle}: no such file (run `pdp build`)", file=sys.stderr)
        return EXIT_USAGE
    try:
        pushed = push_bundle(
            args.bundle,
            reference,
            ca_file=args.ca_file,
            plain_http=args.plain_http,
            registry_config=args.registry_config,
        )
    except ValueError as exc:
        print(f"pdp publish-bundle: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OciError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_json(
        {
            "reference": pushed.reference,
            "digest": pushed.digest,
            "pinned": pushed.pinned,
            "revision": pushed.revision,
        }
    )
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("publish-bundle", help="push the signed bundle to an OCI registry for OPA to pull")
    p.add_argument("--oci", required=True, metavar="REGISTRY/REPOSITORY:TAG", help="where to push it")
    p.add_argument(
        "--bundle",
        type=Path,
        default=STATE_ROOT / "bundles" / "gpupaas.tar.gz",
        help="the signed bundle (default: the current one `pdp build` made)",
    )
    p.add_argument("--ca-file", type=Path, help="PEM CA that issued the registry's TLS certificate")
    p.add_argument("--registry-config", type=Path, help="registry credentials (a docker config.json)")
    p.add_argument(
        "--plain-http",
        action="store_true",
        help="HTTP without TLS (refused unless the registry is on loopback)",
    )
    p.set_defaults(func=cmd_publish_bundle)

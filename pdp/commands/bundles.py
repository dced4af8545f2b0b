"""`pdp validate`, `pdp build`, `pdp keygen`, `pdp serve-bundles`: the tenant documents made into
signed bundles, and served to OPA."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from pdp.commands.output import print_json
from pdp.commands.running import serve_until_signal, stop_on_signals
from pdp.opa.binary import STATE_ROOT
from pdp.options import with_config


def cmd_validate(args: argparse.Namespace) -> int:
    from pdp.bundles.build import build_bundle
    from pdp.config import load_config

    config = load_config(args.tenants, args.fleet)
    # A throwaway build runs the policies' own contradiction checks without publishing anything.
    with tempfile.TemporaryDirectory() as tmp:
        build_bundle(config, policies=args.policies, out_dir=Path(tmp), signing_key=None)
    print(f"ok: {len(config.tenants)} tenants and fleet {config.fleet['name']!r} are valid")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from pdp.bundles.build import build_bundle
    from pdp.bundles.signing import ensure_keypair
    from pdp.config import load_config

    config = load_config(args.tenants, args.fleet)
    key = args.signing_key or ensure_keypair(args.keys).private_key
    bundle = build_bundle(
        config, policies=args.policies, out_dir=args.bundles, signing_key=key, wasm=args.engine == "wasm"
    )
    built = {"revision": bundle.revision, "bundle": str(bundle.path), "signed": bundle.signed}
    if bundle.wasm_path is not None:
        built["wasm_bundle"] = str(bundle.wasm_path)
    print_json(built)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from pdp.bundles.signing import generate_keypair

    pair = generate_keypair(args.keys)
    print_json({"private_key": str(pair.private_key), "public_key": str(pair.public_key)})
    return 0


def cmd_serve_bundles(args: argparse.Namespace) -> int:
    from pdp.bundles.server import BundleServer
    from pdp.net.listen import check_plaintext, tls_files
    from pdp.net.servingcert import ServingCertificate
    from pdp.options import configure_logging

    stop = stop_on_signals()
    configure_logging()
    files = tls_files(args.tls_cert, args.tls_key, "--tls-cert", "--tls-key")
    host, port = check_plaintext(
        "--listen", args.listen, tls=files, insecure=args.insecure, carries="bundles (tenant data)"
    )
    tls = ServingCertificate(files.cert, files.key) if files else None
    server = BundleServer(args.bundles, host, port, tls=tls).start()
    print(f"serving bundles from {args.bundles} at {server.url}", flush=True)
    serve_until_signal(server, stop)
    return 0


def add_parsers(sub: Any) -> None:
    from pdp.net.listen import add_tls_options

    with_config(sub.add_parser("validate", help="check tenant and fleet documents")).set_defaults(
        func=cmd_validate
    )
    b = with_config(sub.add_parser("build", help="build and sign the bundle"))
    b.add_argument("--signing-key", type=Path, help="PEM private key (default: .keys/)")
    b.set_defaults(func=cmd_build)
    k = sub.add_parser("keygen", help="make a new bundle signing key pair")
    k.add_argument("--keys", type=Path, default=STATE_ROOT / ".keys")
    k.set_defaults(func=cmd_keygen)
    sb = sub.add_parser("serve-bundles", help="serve built bundles to OPA")
    sb.add_argument("--bundles", type=Path, default=STATE_ROOT / "bundles")
    sb.add_argument("--listen", default="127.0.0.1:8282")
    add_tls_options(sb, "bundles")
    sb.set_defaults(func=cmd_serve_bundles)

"""The `pdp serve` options of the HTTP decision API, kept here so the CLI only wires them in."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pdp.point import DecisionPoint

if TYPE_CHECKING:
    from pdp.api.http_server import HttpDecisionServer


def add_http_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--http-listen",
        metavar="HOST:PORT",
        help="also serve the HTTP/JSON decision API (POST /v1/decide, /v1/decide/batch)",
    )
    parser.add_argument("--http-cert", type=Path, help="PEM certificate chain: serve the HTTP API over HTTPS")
    parser.add_argument("--http-key", type=Path, help="PEM private key of the HTTP API")
    parser.add_argument(
        "--http-token-file",
        type=Path,
        help="file of accepted bearer tokens, one a line, mode 0600; re-read when it changes",
    )
    # --insecure (plaintext HTTP off loopback too) is serve's one option for every listener
    # (pdp.listen.add_insecure_option); a second one made argparse refuse to build the CLI.


def http_address(args: argparse.Namespace) -> tuple[str, int] | None:
    """HOST, PORT of --http-listen, refusing what must not start; None without the option."""
    from pdp.api.http_server import is_loopback

    if not args.http_listen:
        return None
    host, sep, port = args.http_listen.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"--http-listen {args.http_listen}: expected HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    if bool(args.http_cert) != bool(args.http_key):
        raise SystemExit("give both --http-cert and --http-key, or neither")
    if not args.http_cert and not is_loopback(host) and not args.insecure:
        raise SystemExit(
            f"--http-listen {args.http_listen} is not loopback: give --http-cert and --http-key "
            "(or --insecure on a private network)"
        )
    return host, int(port)


def start_http(
    args: argparse.Namespace, point: DecisionPoint, engine_ready: Callable[[], bool]
) -> HttpDecisionServer | None:
    """The running HTTP API server, or None without --http-listen."""
    address = http_address(args)
    if address is None:
        return None
    from pdp.api.http_server import HttpDecisionServer
    from pdp.api.tokens import BearerTokens, TokenFileError

    try:
        tokens = BearerTokens(args.http_token_file) if args.http_token_file else None
    except TokenFileError as exc:
        raise SystemExit(f"--http-token-file {exc}") from exc
    server = HttpDecisionServer(
        point,
        host=address[0],
        port=address[1],
        cert_file=args.http_cert,
        key_file=args.http_key,
        tokens=tokens,
        engine_ready=engine_ready,
    ).start()
    auth = "bearer token" if tokens else "no authentication"
    print(f"HTTP decision API on {server.url}/v1/decide ({auth})", flush=True)
    return server

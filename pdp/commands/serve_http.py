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
        metavar="HOST:PORT|unix:PATH",
        help="also serve the HTTP/JSON decision API (POST /v1/decide, /v1/decide/batch); unix:PATH "
        "serves it on a unix socket, mode 0660, in a folder only this user may write (the Slurm hook's)",
    )
    parser.add_argument("--http-cert", type=Path, help="PEM certificate chain: serve the HTTP API over HTTPS")
    parser.add_argument("--http-key", type=Path, help="PEM private key of the HTTP API")
    parser.add_argument(
        "--http-token-file",
        type=Path,
        help="file of 'PRINCIPAL TOKEN' lines (admin, tenant:NAME, substrate:NAME), mode 0600, re-read "
        "when it changes (default: --token-file); required off loopback",
    )
    # Plaintext off loopback: the serve command's one --insecure (pdp/net/listen.py) covers it too.


def http_address(args: argparse.Namespace) -> tuple[str, int] | Path | None:
    """HOST, PORT of --http-listen, or the path of unix:PATH, refusing what must not start
    (pdp/net/listen.py's rule for every listener); None without the option."""
    from pdp.api.auth import require_credentials
    from pdp.net.listen import ListenError, check_plaintext, tls_files, unix_socket_path

    if not args.http_listen:
        return None
    tls = tls_files(args.http_cert, args.http_key, "--http-cert", "--http-key")
    path = unix_socket_path(args.http_listen)
    if path is not None:
        if tls is not None:
            # Nothing on the way to encrypt; the file's permissions decide who may connect.
            raise ListenError(f"--http-listen {args.http_listen}: TLS is for TCP; give no --http-cert")
        return path
    host, port = check_plaintext(
        "--http-listen",
        args.http_listen,
        tls=tls,
        insecure=args.insecure,
        tls_options="--http-cert and --http-key",
        carries="intents and decisions",
    )
    require_credentials(f"--http-listen {args.http_listen}", host, _token_file(args), "--http-token-file")
    return host, port


def _token_file(args: argparse.Namespace) -> Path | None:
    """--http-token-file, else the gRPC front's --token-file: one file of principals serves both."""
    return args.http_token_file or getattr(args, "token_file", None)


def start_http(
    args: argparse.Namespace, point: DecisionPoint, engine_ready: Callable[[], bool]
) -> HttpDecisionServer | None:
    """The running HTTP API server, or None without --http-listen."""
    address = http_address(args)
    if address is None:
        return None
    from pdp.api.http_server import HttpDecisionServer
    from pdp.api.token_file import BearerTokens, TokenFileError
    from pdp.net.limits import serving_limits

    token_file = _token_file(args)
    try:
        tokens = BearerTokens(token_file) if token_file else None
    except TokenFileError as exc:
        option = "--http-token-file" if args.http_token_file else "--token-file"
        raise SystemExit(f"{option} {exc}") from exc
    unix = address if isinstance(address, Path) else None
    host, port = ("127.0.0.1", 0) if isinstance(address, Path) else address
    server = HttpDecisionServer(
        point,
        host=host,
        port=port,
        unix_socket=unix,
        cert_file=args.http_cert,
        key_file=args.http_key,
        tokens=tokens,
        engine_ready=engine_ready,
        **serving_limits(args).server_options(),
    ).start()
    auth = "bearer token" if tokens else "no authentication"
    print(f"HTTP decision API on {server.url}/v1/decide ({auth})", flush=True)
    return server

"""Where a server may listen, and whether it may do so in plaintext: one rule for every listener
(gRPC PDP, admission webhook, scheduler extender, lifecycle product API, bundle server).

Off loopback a listener serves TLS. Plaintext there is refused unless the operator says
`--insecure` (a private network they trust), and then it is logged as a warning on every start,
so an accidental plaintext listener is never silent. Loopback means 127.0.0.0/8, ::1 or
`localhost`; any other name or address, the wildcards 0.0.0.0 and :: included, is off loopback.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class ListenError(ValueError):
    """A listener option that cannot be served as given; the message names the option."""


def split_host_port(listen: str, option: str = "--listen") -> tuple[str, int]:
    """HOST:PORT (IPv6 in brackets) -> (host without brackets, port); an empty host is 0.0.0.0."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ListenError(f"{option} {listen}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def bound_url(sock: socket.socket, *, tls: bool) -> str:
    """The http(s) URL a listening socket serves (IPv6 hosts in brackets)."""
    host, port = str(sock.getsockname()[0]), int(sock.getsockname()[1])
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{port}"


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path


def tls_files(cert: Path | None, key: Path | None, cert_option: str, key_option: str) -> TlsFiles | None:
    """Both files or neither; one without the other is an error naming both options."""
    if bool(cert) != bool(key):
        raise ListenError(f"give both {cert_option} and {key_option}, or neither")
    return TlsFiles(cert, key) if cert and key else None


def check_plaintext(
    option: str,
    listen: str,
    *,
    tls: TlsFiles | None,
    insecure: bool,
    tls_options: str = "--tls-cert and --tls-key",
    carries: str = "requests",
) -> tuple[str, int]:
    """Refuse a plaintext listener off loopback unless `insecure`, and warn when it is allowed.
    Returns (host, port)."""
    host, port = split_host_port(listen, option)
    if tls is None and not is_loopback(host):
        if not insecure:
            raise ListenError(
                f"{option} {listen} is not loopback: give {tls_options} to serve TLS "
                "(or --insecure to serve plaintext on a private network you trust)"
            )
        log.warning(
            "%s %s: serving plaintext off loopback because of --insecure; %s travel unencrypted",
            option,
            listen,
            carries,
        )
    return host, port


def add_tls_options(sp: argparse.ArgumentParser, what: str) -> None:
    """--tls-cert, --tls-key and --insecure for a listener serving `what`."""
    sp.add_argument("--tls-cert", type=Path, help=f"PEM certificate chain: serve {what} over TLS")
    sp.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    add_insecure_option(sp)


def add_insecure_option(sp: argparse.ArgumentParser, *aliases: str) -> None:
    sp.add_argument(
        "--insecure",
        *aliases,
        dest="insecure",
        action="store_true",
        help="allow plaintext off loopback (a private network only; logged as a warning)",
    )

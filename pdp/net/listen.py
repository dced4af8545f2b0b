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
import os
import socket
import stat
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


UNIX_PREFIX = "unix:"


def unix_socket_path(listen: str) -> Path | None:
    """The path of a `unix:/PATH` listen address; None for HOST:PORT."""
    if not listen.startswith(UNIX_PREFIX):
        return None
    path = Path(listen.removeprefix(UNIX_PREFIX))
    if not path.is_absolute():
        raise ListenError(f"{listen}: expected unix:/ABSOLUTE/PATH")
    return path


def bind_unix_socket(path: Path, mode: int = 0o660) -> socket.socket:
    """A unix stream socket bound at `path`, not yet listening, its file at `mode`.

    Refused in a folder that anyone but its owner (this user or root) may write: there another
    user could bind the path while this server is down and answer its clients, which is what the
    socket is for preventing. A socket file left by an earlier run is replaced; any other file is
    an error."""
    folder = path.parent
    try:
        info = folder.stat()
    except OSError as exc:
        raise ListenError(f"unix:{path}: cannot use its folder: {exc}") from exc
    if info.st_uid not in (os.geteuid(), 0) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ListenError(
            f"unix:{path}: its folder {folder} may be written by others than its owner "
            f"(mode {stat.filemode(info.st_mode)}, uid {info.st_uid}): another user could take the "
            "socket's place while this server is down; use a folder only this user may write"
        )
    if len(os.fsencode(path)) >= 108:
        raise ListenError(f"unix:{path}: longer than a unix socket path may be (107 bytes)")
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
        else:
            raise ListenError(f"unix:{path}: exists and is not a socket")
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # No moment at which the file exists with wider permissions than `mode`.
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, mode)
    return sock


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
